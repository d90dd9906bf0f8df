// Tag → React component. Built-in tags register themselves; users add their own with registerComponent.
import type { ComponentType, ReactNode } from "react";

/** What a tag's component receives: the element's props (minus tag/key/children) plus rendered children. */
export type ElementProps = Record<string, unknown> & { elementKey: string; children?: ReactNode };

export interface RegisterOptions {
  /**
   * The component puts `userData={elementUserData(props.elementKey)}` on its own root object, so
   * ElementNode need not wrap it in a tagged group (built-ins do; a plugin may, e.g. to keep an
   * `attach` child attached to its parent). Default false: the element is wrapped.
   */
  tagsItself?: boolean;
}

export interface RegisteredComponent {
  component: ComponentType<ElementProps>;
  tagsItself: boolean;
}

const components = new Map<string, RegisteredComponent>();

/**
 * Registers a React-three-fiber component for a scene tag, e.g.
 *   registerComponent("Arrow", ({ position, color }) => <mesh position={position}>…</mesh>)
 * Registering a built-in tag's name replaces it. The mask layer finds the element an object belongs
 * to through the tagged object above it: ElementNode wraps the component in a transform-neutral
 * `<group userData={{tabfarmKey}}>` unless `tagsItself` says the component tags its root itself.
 */
export function registerComponent(tag: string, component: ComponentType<ElementProps>, options: RegisterOptions = {}): void {
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(tag)) throw new Error(`registerComponent: invalid tag name '${tag}'`);
  components.set(tag, { component, tagsItself: options.tagsItself === true });
}

export function componentFor(tag: string): RegisteredComponent | undefined {
  return components.get(tag);
}

export function isKnownTag(tag: string): boolean {
  return components.has(tag);
}

export function knownTags(): string[] {
  return [...components.keys()].sort();
}

/** The userData field naming the element an object was made for (read by the mask and boxes passes). */
export const ELEMENT_KEY_FIELD = "tabfarmKey";

/** `userData` for the root object of element `key`: marks it, and everything under it, as that element's. */
export function elementUserData(key: string): { [ELEMENT_KEY_FIELD]: string } {
  return { [ELEMENT_KEY_FIELD]: key };
}
