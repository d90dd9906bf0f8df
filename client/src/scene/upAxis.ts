// The scene's up axis: DefaultScene sets it while rendering (before any camera's layout effect runs,
// wherever the camera sits in the tree), and cameras that look at a point use it.
import { Vector3 } from "three";

export const Y_UP = new Vector3(0, 1, 0);
export const sceneUp = Y_UP.clone();

/** Accepts "y" | "z" | "x" (optionally signed, e.g. "-z") or a 3-vector. */
export function parseUp(up: unknown): Vector3 {
  if (Array.isArray(up) && up.length === 3) return new Vector3(...(up as [number, number, number])).normalize();
  if (typeof up === "string") {
    const m = /^([+-]?)([xyz])$/i.exec(up.trim());
    if (m) {
      const v = new Vector3();
      v[m[2].toLowerCase() as "x" | "y" | "z"] = m[1] === "-" ? -1 : 1;
      return v;
    }
  }
  return Y_UP.clone();
}
