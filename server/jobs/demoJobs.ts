// The built-in demo: an orbit of camera poses around a DefaultScene with a few objects.
import type { SceneElement } from "../../protocol/elements.js";
import type { JobSpec } from "../../protocol/job.js";

export function demoScene(): SceneElement {
  return {
    tag: "DefaultScene",
    key: "demo",
    grid: true,
    background: "#20232a",
    children: [
      { tag: "Box", key: "box", position: [-1.6, 0.5, 0], color: "#e4572e" },
      { tag: "Sphere", key: "sphere", position: [0, 0.6, 1.4], args: [0.6, 48, 24], color: "#29335c" },
      { tag: "Cylinder", key: "cylinder", position: [1.6, 0.6, 0], args: [0.4, 0.4, 1.2, 32], color: "#f3a712" },
      { tag: "TorusKnot", key: "knot", position: [0, 1.2, -1.4], color: "#669bbc", metalness: 0.4, roughness: 0.3 },
      { tag: "Plane", key: "floor", args: [6, 6], rotation: [-Math.PI / 2, 0, 0], position: [0, 0.001, 0], color: "#3d405b" },
    ],
  };
}

/** `frames` camera poses on a circle (radius 6, height 3) looking at the scene's centre, `perJob` per job. */
export function* demoJobs(frames: number, perJob: number): Generator<JobSpec> {
  const digits = Math.max(4, String(Math.ceil(frames / perJob)).length);
  for (let start = 0, j = 0; start < frames; start += perJob, j++) {
    const poses = [];
    for (let i = start; i < Math.min(frames, start + perJob); i++) {
      const angle = (2 * Math.PI * i) / frames;
      poses.push({
        camera: { position: [6 * Math.cos(angle), 3, 6 * Math.sin(angle)] as [number, number, number], lookAt: [0, 0.5, 0] as [number, number, number], fov: 50 },
      });
    }
    yield { id: `demo-${String(j).padStart(digits, "0")}`, params: { orbit_start: start, orbit_frames: frames }, frames: poses };
  }
}
