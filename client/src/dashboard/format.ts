// How the dashboard writes durations, rates and counts: one place, so every panel reads the same.

/** 3725 → "1h 2m 5s", 65 → "1m 5s", 4 → "4s"; null (unknown) → "—". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

/** How long ago `at` was, by the server's clock `now` (both epoch ms): "2m 10s ago". */
export function formatAgo(at: number, now: number): string {
  return `${formatDuration(Math.max(0, now - at) / 1000)} ago`;
}

export function formatRate(fps: number): string {
  return fps >= 10 ? fps.toFixed(0) : fps.toFixed(1);
}

export function formatClock(at: number): string {
  return new Date(at).toLocaleString();
}

export function percent(part: number, whole: number): number {
  return whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
}
