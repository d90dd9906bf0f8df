// Renders one element of the JSON tree with its registered component, children recursively.
// memo on the element object: ops rebuild only the changed path, so untouched subtrees skip rendering.
// A component that does not tag its own root object (registerComponent's `tagsItself`) is wrapped in a
// transform-neutral group tagged with the element's key, so the mask knows which element drew what.
import { memo } from "react";
import type { SceneElement } from "../../../protocol/elements.js";
import { componentFor, elementUserData } from "./registry.js";

export const ElementNode = memo(function ElementNode({ element }: { element: SceneElement }) {
  const registered = componentFor(element.tag);
  if (!registered) return null; // the store rejects unknown tags before they get here
  const { component: Component, tagsItself } = registered;
  const { tag: _tag, key, children, ...props } = element;
  const rendered = (
    <Component {...props} elementKey={key}>
      {children?.map((child) => <ElementNode key={child.key} element={child} />)}
    </Component>
  );
  return tagsItself ? rendered : <group userData={elementUserData(key)}>{rendered}</group>;
});
