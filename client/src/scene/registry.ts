// Tag → React component. Built-in tags register themselves; users add their own with registerComponent.
import type { ComponentType, ReactNode } from "react";

/** What a tag's component receives: the element's props (minus tag/key/children) plus rendered children. */
export type ElementProps = Record<string, unknown> & { elementKey: string; children?: ReactNode };

const components = new Map<string, ComponentType<ElementProps>>();

/**
 * Registers a React-three-fiber component for a scene tag, e.g.
 *   registerComponent("Arrow", ({ position, color }) => <mesh position={position}>…</mesh>)
 * Registering a built-in tag's name replaces it.
 */
export function registerComponent(tag: string, component: ComponentType<ElementProps>): void {
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(tag)) throw new Error(`registerComponent: invalid tag name '${tag}'`);
  components.set(tag, component);
}

export function componentFor(tag: string): ComponentType<ElementProps> | undefined {
  return components.get(tag);
}

export function isKnownTag(tag: string): boolean {
  return components.has(tag);
}

export function knownTags(): string[] {
  return [...components.keys()].sort();
}
