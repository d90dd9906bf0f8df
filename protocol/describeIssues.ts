// One wording for schema errors on both ends: "path.to.field: message; other.field: message".
import type { z } from "zod";

export function describeIssues(error: z.ZodError, limit = Infinity): string {
  return error.issues
    .slice(0, limit)
    .map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}
