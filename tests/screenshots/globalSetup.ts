// Builds the client once before the workers start, so they never race to write dist/.
import { buildClient } from "../../harness/buildClient.js";

export default async function globalSetup(): Promise<void> {
  await buildClient({ plugins: process.env.TABFARM_PLUGINS || undefined, log: (l) => console.log(l) });
}
