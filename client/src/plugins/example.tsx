// An example plugin: registers an `Arrow` tag. Build with it: `npm run farm -- --plugins client/src/plugins/example.tsx`.
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
