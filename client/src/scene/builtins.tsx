// The built-in tags. Props follow three.js names: position, rotation (Euler XYZ radians), scale,
// args (geometry constructor arguments), color, opacity, wireframe, metalness, roughness, visible,
// side ("front" default, "back", "double").
// Every built-in that makes an object tags it with its element key (elementUserData), so ElementNode does
// not wrap built-ins in a tagged group: Scene and DefaultScene are fragments whose `<color
// attach="background">` must reach the scene itself, also when they sit inside another Scene (the farm
// puts a job's scene under its own root). Having no object, they own no 3D-box frame (world is used).
import { useLayoutEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { BackSide, DoubleSide, FrontSide, type Object3D, type Side } from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { elementUserData, registerComponent, type ElementProps } from "./registry.js";
import { sceneStore } from "./sceneStore.js";
import { parseUp, sceneUp } from "./upAxis.js";
import { CameraView } from "../camera/CameraView.js";

type Vec3 = [number, number, number];
const v3 = (v: unknown): Vec3 | undefined => (Array.isArray(v) && v.length === 3 ? (v as Vec3) : undefined);
const scale3 = (v: unknown): Vec3 | undefined => (typeof v === "number" ? [v, v, v] : v3(v));

/** Props of an element's root object: its transform and the tag naming its element. */
function transform(p: ElementProps) {
  return {
    position: v3(p.position), rotation: v3(p.rotation), scale: scale3(p.scale), visible: p.visible !== false,
    userData: elementUserData(p.elementKey),
  };
}

/** Built-ins tag their own root objects (see the top of this file). */
const builtin = (tag: string, component: Parameters<typeof registerComponent>[1]) => registerComponent(tag, component, { tagsItself: true });

const SIDES: Record<string, Side> = { front: FrontSide, back: BackSide, double: DoubleSide };

function Material(p: ElementProps) {
  const side = SIDES[String(p.side)] ?? FrontSide;
  const common = {
    side,
    color: (p.color as string) ?? "#cccccc",
    wireframe: Boolean(p.wireframe),
    transparent: typeof p.opacity === "number" && p.opacity < 1,
    opacity: typeof p.opacity === "number" ? p.opacity : 1,
  };
  if (p.material === "basic") return <meshBasicMaterial {...common} />;
  if (p.material === "normal") return <meshNormalMaterial wireframe={common.wireframe} side={side} />;
  return (
    <meshStandardMaterial {...common} metalness={(p.metalness as number) ?? 0.1} roughness={(p.roughness as number) ?? 0.6} />
  );
}

function meshTag(geometry: (args: unknown[] | undefined) => ReactNode) {
  return function Mesh(p: ElementProps) {
    return (
      <mesh {...transform(p)} castShadow={Boolean(p.castShadow)} receiveShadow={Boolean(p.receiveShadow)}>
        {geometry(Array.isArray(p.args) ? p.args : undefined)}
        <Material {...p} />
        {p.children}
      </mesh>
    );
  };
}

type Args<T extends unknown[]> = T | undefined;
builtin("Box", meshTag((a) => <boxGeometry args={a as Args<[number, number, number]>} />));
builtin("Sphere", meshTag((a) => <sphereGeometry args={(a as Args<[number, number, number]>) ?? [0.5, 32, 16]} />));
builtin("Cylinder", meshTag((a) => <cylinderGeometry args={(a as Args<[number, number, number, number]>) ?? [0.5, 0.5, 1, 32]} />));
builtin("Plane", meshTag((a) => <planeGeometry args={a as Args<[number, number]>} />));
builtin("TorusKnot", meshTag((a) => <torusKnotGeometry args={(a as Args<[number, number, number, number]>) ?? [0.4, 0.12, 96, 12]} />));

builtin("Group", (p) => <group {...transform(p)}>{p.children}</group>);
builtin("Scene", (p) => (
  <>
    {typeof p.background === "string" && <color attach="background" args={[p.background]} />}
    {p.children}
  </>
));
builtin("AmbientLight", (p) => (
  <ambientLight intensity={(p.intensity as number) ?? 0.5} color={(p.color as string) ?? "#ffffff"} />
));
builtin("DirectionalLight", (p) => (
  <directionalLight
    position={v3(p.position) ?? [5, 10, 5]}
    intensity={(p.intensity as number) ?? 1.5}
    color={(p.color as string) ?? "#ffffff"}
    castShadow={Boolean(p.castShadow)}
  />
));
builtin("HemisphereLight", (p) => (
  <hemisphereLight args={[(p.skyColor as string) ?? "#ffffff", (p.groundColor as string) ?? "#444444", (p.intensity as number) ?? 1]} />
));

/** Grid, hemisphere + directional light, background and up axis; children go inside. */
builtin("DefaultScene", function DefaultScene(p) {
  const up = useMemo(() => parseUp(p.up), [JSON.stringify(p.up)]);
  sceneUp.copy(up); // idempotent, so safe in render; see upAxis.ts
  const zUp = Math.abs(up.z) > 0.5;
  const lightPos: Vec3 = zUp ? [5, 5, 10] : [5, 10, 5];
  return (
    <>
      <color attach="background" args={[(p.background as string) ?? "#1e1e24"]} />
      <hemisphereLight args={["#ffffff", "#3a3a48", (p.hemisphereIntensity as number) ?? 1.2]} position={zUp ? [0, 0, 1] : [0, 1, 0]} />
      <directionalLight position={lightPos} intensity={(p.lightIntensity as number) ?? 2} />
      {p.grid !== false && (
        <gridHelper args={[(p.gridSize as number) ?? 20, (p.gridDivisions as number) ?? 20, "#888888", "#444444"]} rotation={zUp ? [Math.PI / 2, 0, 0] : [0, 0, 0]} />
      )}
      {p.children}
    </>
  );
});

/** glTF / GLB from a URL; a failed load is reported to the server and fails the next grab. */
builtin("Gltf", function Gltf(p) {
  const url = String(p.url ?? "");
  const [object, setObject] = useState<Object3D | null>(null);
  const finishLoad = useRef<() => void>(() => {});
  // A layout effect, so the load is pending before SceneRoot reports this commit to waiting grabs.
  useLayoutEffect(() => {
    let alive = true;
    const done = sceneStore.beginLoad();
    finishLoad.current = done;
    new GLTFLoader().loadAsync(url).then(
      (gltf) => (alive ? setObject(gltf.scene) : done()),
      (err: unknown) => {
        sceneStore.reportError(`Gltf '${p.elementKey}' failed to load ${url}: ${(err as Error)?.message ?? err}`);
        done();
      },
    );
    return () => {
      alive = false;
      done();
    };
  }, [url, p.elementKey]);
  useLayoutEffect(() => {
    if (object) finishLoad.current();
  }, [object]);
  return (
    <group {...transform(p)}>
      {object && <primitive object={object} />}
      {p.children}
    </group>
  );
});

builtin("CameraView", CameraView);
