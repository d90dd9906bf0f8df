// Entry point of the dashboard page (/dashboard?token=…): its own bundle, so farm tabs never load it.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.js";
import "./dashboard.css";

const token = new URLSearchParams(location.search).get("token") ?? "";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App token={token} />
  </StrictMode>,
);
