export * from "./elements.js";
export * from "./camera.js";
export * from "./grab.js";
export * from "./events.js";
export * from "./job.js";
