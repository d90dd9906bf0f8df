// Loads a job handler: user code that drives one session through one job (scene ops, grabs),
// for jobs the declarative JobSpec form cannot express.
import type { Session } from "../session/Session.js";
import type { JobContext } from "../dispatch/JobContext.js";
import { describeExports, importUserModule, pickExport } from "./loadJobsModule.js";

/** Runs one job on one session: scene ops, grabs, and job.saveFrame for each frame to keep. */
export type JobHandler = (session: Session, job: JobContext) => Promise<void> | void;

/** Imports the module at `path`; its default export, or else its named export `handler`, must be a function. */
export async function loadHandlerModule(path: string): Promise<JobHandler> {
  const mod = await importUserModule(path, "handler");
  const [name, value] = pickExport(mod, "handler", (v) => typeof v === "function");
  if (typeof value === "function") {
    // A class is typeof "function" too, but calling it without `new` throws on the first job.
    if (/^class[\s{]/.test(Function.prototype.toString.call(value))) {
      throw new Error(`handler module ${path}: the ${name} is a class; export a function (session, job) => Promise<void>`);
    }
    return value as JobHandler;
  }
  throw new Error(
    `handler module ${path}: expected a function (session, job) => Promise<void> as the default export ` +
      `or as an export named "handler"; ${describeExports(mod)}`,
  );
}
