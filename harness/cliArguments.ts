// Argument parsers shared by the farm's commands (harness/cli.ts) and `worker` (workerCommand.ts). They throw
// commander's InvalidArgumentError, so a bad value is a usage error (exit 2) whose message names the option.
import { InvalidArgumentError } from "commander";

/**
 * A whole number from `min` to `max`, written in digits: not "" or " " (which Number() reads as 0, so
 * `--wait ""` would mean forever), "1e3", "0x1F90" or "+5".
 */
export const int = (name: string, min: number, max: number) => (value: string) => {
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
};

/** Turns a parser's Error into commander's InvalidArgumentError. */
export const argument = <T>(parse: (value: string) => T) => (value: string) => {
  try {
    return parse(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};
