// An example plugin: registers an `Arrow` tag and a `Stack` tag. Build with it:
// `npm run farm -- --plugins client/src/plugins/example.tsx`.
// A plugin's component needs nothing for the mask layer: ElementNode wraps it in a group tagged with the
// element's key, so every mesh it makes gets the element's instance id (and child elements their own).
import { useLayoutEffect, useRef } from "react";
import { Matrix4, type InstancedMesh } from "three";
import { registerComponent } from "../scene/registry.js";

type Vec3 = [number, number, number];

registerComponent("Arrow", (p) => (
  <group position={p.position as Vec3 | undefined} rotation={p.rotation as Vec3 | undefined}>
    <mesh position={[0, 0.4, 0]}>
      <cylinderGeometry args={[0.05, 0.05, 0.8, 12]} />
      <meshStandardMaterial color={(p.color as string) ?? "#ffcc00"} />
    </mesh>
    <mesh position={[0, 0.9, 0]}>
      <coneGeometry args={[0.12, 0.2, 16]} />
      <meshStandardMaterial color={(p.color as string) ?? "#ffcc00"} />
    </mesh>
    {p.children}
  </group>
));

/** `count` (1..100) cubes of side `size` stacked upwards from `position`, drawn as one instanced mesh. */
registerComponent("Stack", function Stack(p) {
  const count = Math.max(1, Math.min(100, Math.round(Number(p.count ?? 3)) || 1));
  const size = typeof p.size === "number" && p.size > 0 ? p.size : 0.4;
  const mesh = useRef<InstancedMesh>(null);
  // A layout effect: the instances are placed before the commit that a waiting grab renders.
  useLayoutEffect(() => {
    const m = new Matrix4();
    for (let i = 0; i < count; i++) mesh.current!.setMatrixAt(i, m.makeTranslation(0, size / 2 + i * size, 0));
    mesh.current!.instanceMatrix.needsUpdate = true;
    mesh.current!.boundingSphere = null; // recomputed over all instances for culling
  }, [count, size]);
  return (
    <instancedMesh key={count} ref={mesh} args={[undefined, undefined, count]} position={p.position as Vec3 | undefined}>
      <boxGeometry args={[size, size, size]} />
      <meshStandardMaterial color={(p.color as string) ?? "#8ecae6"} />
      {p.children}
    </instancedMesh>
  );
});
