// Virtual cameras by key, so a grab can find the CameraView it names.
import type { PerspectiveCamera } from "three";

export interface VirtualCamera {
  camera: PerspectiveCamera;
  width: number;
  height: number;
  downsample: number;
  /** MSAA samples for the render target (0 = off). */
  samples: number;
}

export const cameraRegistry = new Map<string, VirtualCamera>();
