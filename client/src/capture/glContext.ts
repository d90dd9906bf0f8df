// The R3F renderer and scene, handed from inside the Canvas to the capture code outside React.
import { useThree } from "@react-three/fiber";
import type { Scene, WebGLRenderer } from "three";

export const glContext: { gl?: WebGLRenderer; scene?: Scene } = {};

export function GlContextBridge() {
  const gl = useThree((s) => s.gl);
  const scene = useThree((s) => s.scene);
  glContext.gl = gl;
  glContext.scene = scene;
  return null;
}
