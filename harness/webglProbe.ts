import type { Page } from "playwright-core";

export interface WebglProbe {
  /** Any WebGL context (1 or 2) could be created. */
  webgl: boolean;
  /** A WebGL2 context could be created. */
  webgl2: boolean;
  /** Unmasked renderer (WEBGL_debug_renderer_info) if available, else RENDERER; "" when no context. */
  renderer: string;
  /** Unmasked vendor if available, else VENDOR; "" when no context. */
  vendor: string;
}

/**
 * Ask the page whether WebGL works and which GL implementation backs it.
 * Uses a throwaway canvas (not attached to the DOM) and releases the context
 * afterwards so probing doesn't eat into Chromium's per-page context limit.
 */
export async function probeWebgl(page: Page): Promise<WebglProbe> {
  return page.evaluate(() => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    let gl: WebGLRenderingContext | WebGL2RenderingContext | null = null;
    let webgl2 = false;
    try {
      gl = canvas.getContext("webgl2");
      webgl2 = gl !== null;
    } catch {
      gl = null;
    }
    if (!gl) {
      try {
        gl = canvas.getContext("webgl") ?? (canvas.getContext("experimental-webgl") as WebGLRenderingContext | null);
      } catch {
        gl = null;
      }
    }
    if (!gl) return { webgl: false, webgl2: false, renderer: "", vendor: "" };

    let renderer = "";
    let vendor = "";
    const dbg = gl.getExtension("WEBGL_debug_renderer_info");
    if (dbg) {
      renderer = String(gl.getParameter(dbg.UNMASKED_RENDERER_WEBGL) ?? "");
      vendor = String(gl.getParameter(dbg.UNMASKED_VENDOR_WEBGL) ?? "");
    }
    if (!renderer) renderer = String(gl.getParameter(gl.RENDERER) ?? "");
    if (!vendor) vendor = String(gl.getParameter(gl.VENDOR) ?? "");

    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return { webgl: true, webgl2, renderer, vendor };
  });
}

/**
 * Does this renderer string name a CPU rasterizer? Useful to catch a GPU
 * backend (egl/vulkan) that silently landed on software: on a GPU-less host
 * `--use-angle=gl-egl` gives Mesa "llvmpipe" and `--use-angle=vulkan` falls
 * back to Chromium's bundled SwiftShader Vulkan ICD.
 */
export function isSoftwareRenderer(renderer: string): boolean {
  return /swiftshader|llvmpipe|softpipe|lavapipe|software rasterizer|microsoft basic render|\bwarp\b/i.test(renderer);
}
