// A stand-in for @sparticuz/chromium with the same file layout (bin/chromium.br, bin/swiftshader.tar.br,
// bin/al2023.tar.br) and a shell script for the binary, so tests of the bundled browser's cache run in
// milliseconds. Shared by bundledBrowser.test.ts and browser.test.ts.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import * as tar from "tar";

export const VERSION = "0.0.1-test";
export const DIR_NAME = `chromium-${VERSION}-linux-x64`;
// Stands in for Chromium: prints the library path it was given and its arguments.
export const FAKE_BINARY = `#!/bin/sh\nprintf '%s\\n' "LD=$LD_LIBRARY_PATH" "$@"\n# ${"padding ".repeat(20_000)}\n`;

export function tempDir(t: { after: (fn: () => void) => void }, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tabfarm-${name}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A package laid out as @sparticuz/chromium: bin/chromium.br, bin/swiftshader.tar.br, bin/al2023.tar.br. */
export function fakePackage(root: string): string {
  const pkg = path.join(root, "pkg");
  const bin = path.join(pkg, "bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(pkg, "package.json"), JSON.stringify({ name: "@sparticuz/chromium", version: VERSION }));
  fs.writeFileSync(path.join(bin, "chromium.br"), zlib.brotliCompressSync(FAKE_BINARY));
  const pack = (archive: string, files: Record<string, string>) => {
    const src = path.join(root, `src-${archive}`);
    for (const [name, body] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(src, name)), { recursive: true });
      fs.writeFileSync(path.join(src, name), body);
    }
    tar.c({ file: path.join(bin, archive), cwd: src, sync: true, brotli: true }, Object.keys(files));
  };
  pack("swiftshader.tar.br", { "libEGL.so": "egl", "libGLESv2.so": "gles", "libvk_swiftshader.so": "vk", "vk_swiftshader_icd.json": "{}" });
  pack("al2023.tar.br", { "lib/libnss3.so": "nss", "lib/libexpat.so.1": "expat" });
  return pkg;
}

