// Renders one element of the JSON tree with its registered component, children recursively.
// memo on the element object: ops rebuild only the changed path, so untouched subtrees skip rendering.
import { memo } from "react";
import type { SceneElement } from "../../../protocol/elements.js";
import { componentFor } from "./registry.js";

export const ElementNode = memo(function ElementNode({ element }: { element: SceneElement }) {
  const Component = componentFor(element.tag);
  if (!Component) return null; // the store rejects unknown tags before they get here
  const { tag: _tag, key, children, ...props } = element;
  return (
    <Component {...props} elementKey={key}>
      {children?.map((child) => <ElementNode key={child.key} element={child} />)}
    </Component>
  );
});
