// The frames/s chart's points, kept in the page: `rate` events replace them (reset) or add to them,
// and at most MAX_KEPT stay, so a long run never grows the page's memory.
import { MAX_RATE_POINTS } from "../../../protocol/dashboard.js";
import type { RatePoint } from "../../../protocol/runEvents.js";

const MAX_KEPT = MAX_RATE_POINTS * 2;

/** Columns as uPlot wants them: x in seconds (uPlot's time axis), y in frames/s. */
export interface RateSeries {
  seconds: number[];
  fps: number[];
}

export const EMPTY_RATE: RateSeries = { seconds: [], fps: [] };

/** A new series (never mutates `series`): uPlot needs x ascending, so a point at the last x replaces it and an older one is dropped. */
export function addRatePoints(series: RateSeries, points: readonly RatePoint[], reset: boolean): RateSeries {
  const seconds = reset ? [] : series.seconds.slice();
  const fps = reset ? [] : series.fps.slice();
  for (const p of points) {
    if (!Number.isFinite(p?.t) || !Number.isFinite(p?.fps)) continue;
    const x = p.t / 1000;
    const last = seconds.length ? seconds[seconds.length - 1]! : -Infinity;
    if (x > last) {
      seconds.push(x);
      fps.push(p.fps);
    } else if (x === last) {
      fps[fps.length - 1] = p.fps;
    }
  }
  const extra = seconds.length - MAX_KEPT;
  if (extra > 0) {
    seconds.splice(0, extra);
    fps.splice(0, extra);
  }
  return { seconds, fps };
}
