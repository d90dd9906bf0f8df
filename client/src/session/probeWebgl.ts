// Which WebGL this page has; reported to the server in `hello`, so a farm without WebGL fails loudly.
import type { BrowserInfo } from "../../../protocol/events.js";

export function browserInfo(worker: string): BrowserInfo {
  const canvas = document.createElement("canvas");
  const gl = (canvas.getContext("webgl2") ?? canvas.getContext("webgl")) as WebGLRenderingContext | null;
  let renderer = "";
  let vendor = "";
  if (gl) {
    const ext = gl.getExtension("WEBGL_debug_renderer_info");
    renderer = String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    vendor = String(gl.getParameter(ext ? ext.UNMASKED_VENDOR_WEBGL : gl.VENDOR));
    gl.getExtension("WEBGL_lose_context")?.loseContext();
  }
  return { renderer, vendor, webgl: Boolean(gl), userAgent: navigator.userAgent, devicePixelRatio: window.devicePixelRatio, worker };
}
