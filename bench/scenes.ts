// Bench scenes and camera poses: the same element trees and orbit for every way of rendering.
import type { SceneElement } from "../protocol/elements.js";
import type { CameraPose } from "../protocol/camera.js";
import type { JobSpec } from "../protocol/job.js";
import type { ImageFormat } from "../protocol/grab.js";

export type SceneName = "light" | "heavy";
export const SCENE_NAMES: readonly SceneName[] = ["light", "heavy"];

const PALETTE = ["#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#c1292e", "#8b5fbf", "#3d405b"];

/** DefaultScene with `knots` TorusKnots (default args: 96×12 segments, ≈2.3k triangles each). */
export function knotScene(knots: number): SceneElement {
  const children: SceneElement[] = [];
  const side = Math.ceil(Math.sqrt(knots));
  const spacing = knots <= 16 ? 1.6 : 0.9;
  for (let i = 0; i < knots; i++) {
    const row = Math.floor(i / side);
    const col = i % side;
    children.push({
      tag: "TorusKnot",
      key: `knot-${i}`,
      position: [(col - (side - 1) / 2) * spacing, 0.6 + (i % 3) * 0.15, (row - (side - 1) / 2) * spacing],
      rotation: [i * 0.3, i * 0.7, 0],
      scale: knots <= 16 ? 1 : 0.6,
      color: PALETTE[i % PALETTE.length],
      metalness: 0.3,
      roughness: 0.4,
    });
  }
  return { tag: "DefaultScene", key: `bench-${knots}`, grid: true, background: "#20232a", children };
}

export function benchScene(name: SceneName): SceneElement {
  return name === "light" ? knotScene(8) : knotScene(200);
}

/** `frames` poses on an orbit around the scene, looking at its centre. */
export function orbit(frames: number, radius = 8): CameraPose[] {
  const poses: CameraPose[] = [];
  for (let i = 0; i < frames; i++) {
    const angle = (2 * Math.PI * i) / frames;
    poses.push({ position: [radius * Math.cos(angle), 4, radius * Math.sin(angle)], lookAt: [0, 0.5, 0], fov: 50 });
  }
  return poses;
}

/** The orbit as declarative farm jobs of `perJob` frames, each carrying the scene, size and format. */
export function orbitJobs(
  prefix: string,
  scene: SceneElement,
  poses: CameraPose[],
  opts: { width: number; height: number; format: ImageFormat; perJob?: number },
): JobSpec[] {
  const perJob = opts.perJob ?? 10;
  const jobs: JobSpec[] = [];
  for (let start = 0, j = 0; start < poses.length; start += perJob, j++) {
    jobs.push({
      id: `${prefix}-${String(j).padStart(5, "0")}`,
      params: { orbit_start: start },
      scene,
      frames: poses.slice(start, start + perJob).map((camera) => ({ camera })),
      width: opts.width,
      height: opts.height,
      format: opts.format,
    });
  }
  return jobs;
}

/** Splits `items` into `parts` contiguous chunks of near-equal length. */
export function split<T>(items: T[], parts: number): T[][] {
  const out: T[][] = [];
  for (let p = 0; p < parts; p++) {
    out.push(items.slice(Math.floor((p * items.length) / parts), Math.floor(((p + 1) * items.length) / parts)));
  }
  return out;
}
