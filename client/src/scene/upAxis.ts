// The scene's up axis, set by DefaultScene and used by cameras that look at a point.
import { Vector3 } from "three";

export const sceneUp = new Vector3(0, 1, 0);

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
  return new Vector3(0, 1, 0);
}
