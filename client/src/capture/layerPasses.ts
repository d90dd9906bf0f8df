// The render passes of the layers besides rgb (protocol/layers.ts says which layer needs which pass):
//  - depth: a full-screen pass over the colour pass's depth texture that writes the distance along the
//    camera axis as the four bytes of a float32 (floatBitsToUint) into an RGBA8 target, so the page reads
//    exact float32 metres; depth (uint16 mm) and depth32 (float32 m) are both made from them in JS.
//  - ids: the scene once more with every mesh's material swapped for one that writes, through two colour
//    attachments (MRT), its instance id (R low byte, G high byte) and its camera-space normal (n·0.5+0.5).
//    The target has no MSAA and no colour space, the material no blending, tone mapping or fog, so the
//    bytes are the ids exactly (an sRGB target would encode them as colours: tests/screenshots/layers.spec.ts).
// An object belongs to the element whose key the nearest tagged object above it (itself included) carries
// (userData.tabfarmKey, see scene/registry.ts); the instance resolution gives that element's id. Objects
// under no tagged object (DefaultScene's grid and lights, helpers) are background: id 0.
// The ids pass keeps each material's side, wireframe, flat shading and visibility, and draws instanced,
// skinned, morphed and batched meshes with three's own chunks (instancing is tested; skinning, morph
// targets and batching are not). It ignores transparency (a half-transparent mesh covers what is behind it), alphaTest and
// alpha maps (cut-out leaves are whole quads), normal and bump maps (normals are the geometry's), and
// draws no lines, points or sprites (no surface: not in the mask or the normals; depth has them).
import {
  BackSide, BufferAttribute, BufferGeometry, Color, DoubleSide, FrontSide, GLSL3, Matrix4, Mesh, MeshBasicMaterial,
  NearestFilter, NoBlending, NoColorSpace, OrthographicCamera, RawShaderMaterial, Scene, ShaderMaterial,
  UnsignedByteType, Vector4, WebGLRenderTarget, type Box3, type Camera, type ColorSpace, type Material, type Object3D,
  type Side, type WebGLRenderer,
} from "three";
import type { Box3dWire } from "../../../protocol/grab.js";
import type { InstanceResolution } from "../../../protocol/instances.js";
import { ELEMENT_KEY_FIELD } from "../scene/registry.js";
import { rowMajor4 } from "./matrices.js";

// ---------------------------------------------------------------------------------------------- depth

// The pass samples row (height-1-y) for output row y, so the bytes read back come out top row first.
const depthMaterial = new RawShaderMaterial({
  glslVersion: GLSL3,
  uniforms: { tDepth: { value: null }, near: { value: 0.1 }, far: { value: 100 } },
  vertexShader: /* glsl */ `
    precision highp float;
    in vec3 position;
    out vec2 vUv;
    void main() { vUv = vec2(position.x * 0.5 + 0.5, 0.5 - position.y * 0.5); gl_Position = vec4(position.xy, 0.0, 1.0); }`,
  fragmentShader: /* glsl */ `
    precision highp float;
    precision highp int;
    uniform highp sampler2D tDepth;
    uniform float near;
    uniform float far;
    in vec2 vUv;
    out highp vec4 outBytes;
    void main() {
      float d = texture(tDepth, vUv).x;
      // Nothing drawn here: 0.0, whose float bits are all zero.
      float metres = d >= 1.0 ? 0.0 : -(near * far) / ((far - near) * d - far);
      uint bits = floatBitsToUint(metres);
      outBytes = vec4(uvec4(bits, bits >> 8u, bits >> 16u, bits >> 24u) & 255u) / 255.0;
    }`,
  depthTest: false,
  depthWrite: false,
  blending: NoBlending,
});
const fullscreenTriangle = new BufferGeometry().setAttribute(
  "position",
  new BufferAttribute(new Float32Array([-1, -1, 0, 3, -1, 0, -1, 3, 0]), 3),
);
const depthScene = new Scene().add(new Mesh(fullscreenTriangle, depthMaterial));
depthScene.children[0].frustumCulled = false;
const passCamera = new OrthographicCamera();

/** An RGBA8 target for the depth pass's bytes. */
export function depthTarget(width: number, height: number): WebGLRenderTarget {
  return new WebGLRenderTarget(width, height, {
    type: UnsignedByteType, colorSpace: NoColorSpace, depthBuffer: false, minFilter: NearestFilter, magFilter: NearestFilter,
  });
}

export interface DepthLayers {
  /** Millimetres, floor(m·1000 + 0.5) clamped to 0..65535; 0 where nothing was hit. */
  depth?: Uint16Array<ArrayBuffer>;
  /** Metres; 0 where nothing was hit. */
  depth32?: Float32Array<ArrayBuffer>;
}

/** Renders the metric depth of `colour`'s depth texture (drawn from `camera`) into `target` (made by depthTarget). */
export function renderDepth(gl: WebGLRenderer, colour: WebGLRenderTarget, target: WebGLRenderTarget, camera: { near: number; far: number }): void {
  depthMaterial.uniforms.tDepth.value = colour.depthTexture;
  depthMaterial.uniforms.near.value = camera.near;
  depthMaterial.uniforms.far.value = camera.far;
  gl.setRenderTarget(target);
  gl.render(depthScene, passCamera);
}

/** The depth pass's result, top row first, in the forms asked for. */
export function readDepth(gl: WebGLRenderer, target: WebGLRenderTarget, want: { depth: boolean; depth32: boolean }): DepthLayers {
  const { width, height } = target;
  // The float32's bytes, little-endian as typed arrays are on every platform browsers run on.
  const metres = new Float32Array(width * height);
  gl.readRenderTargetPixels(target, 0, 0, width, height, new Uint8Array(metres.buffer));
  const out: DepthLayers = {};
  if (want.depth) {
    const mm = new Uint16Array(metres.length);
    for (let i = 0; i < metres.length; i++) mm[i] = Math.min(65535, Math.max(0, Math.floor(metres[i] * 1000 + 0.5)));
    out.depth = mm;
  }
  if (want.depth32) out.depth32 = metres;
  return out;
}

// ------------------------------------------------------------------------------------------------ ids

/** The ids pass's target: attachment 0 instance ids, attachment 1 normals; exact bytes (see the top). */
export function idsTarget(width: number, height: number, colorSpace: ColorSpace = NoColorSpace): WebGLRenderTarget {
  return new WebGLRenderTarget(width, height, {
    count: 2, samples: 0, type: UnsignedByteType, colorSpace, minFilter: NearestFilter, magFilter: NearestFilter, depthBuffer: true,
  });
}

// three's own chunks, as in MeshNormalMaterial, so skinned, morphed, instanced and batched meshes are
// posed here as in the colour pass; FLIP_SIDED (BackSide) flips the normal in defaultnormal_vertex,
// DOUBLE_SIDED flips back faces with gl_FrontFacing in normal_fragment_begin, FLAT_SHADED uses derivatives.
const idsVertexShader = /* glsl */ `
  #include <common>
  #include <batching_pars_vertex>
  #include <normal_pars_vertex>
  #include <morphtarget_pars_vertex>
  #include <skinning_pars_vertex>
  #include <logdepthbuf_pars_vertex>
  varying vec3 vViewPosition;
  void main() {
    #include <batching_vertex>
    #include <beginnormal_vertex>
    #include <morphinstance_vertex>
    #include <morphnormal_vertex>
    #include <skinbase_vertex>
    #include <skinnormal_vertex>
    #include <defaultnormal_vertex>
    #include <normal_vertex>
    #include <begin_vertex>
    #include <morphtarget_vertex>
    #include <skinning_vertex>
    #include <project_vertex>
    #include <logdepthbuf_vertex>
    vViewPosition = - mvPosition.xyz;
  }`;
const idsFragmentShader = /* glsl */ `
  uniform vec4 idBytes;
  varying vec3 vViewPosition;
  #include <normal_pars_fragment>
  #include <logdepthbuf_pars_fragment>
  layout(location = 0) out highp vec4 outId;
  layout(location = 1) out highp vec4 outNormal;
  void main() {
    #include <logdepthbuf_fragment>
    #include <normal_fragment_begin>
    outId = idBytes;
    outNormal = vec4(normalize(normal) * 0.5 + 0.5, 1.0);
  }`;

/** Id materials by id, side, wireframe and flat shading; shared programs, so many are cheap. */
const idMaterials = new Map<string, ShaderMaterial>();
const MAX_ID_MATERIALS = 4096;
/** For meshes whose own material is invisible: they stay out of every layer. */
const invisible = new MeshBasicMaterial({ visible: false });

function idMaterial(id: number, original: Material | undefined): Material {
  if (!original?.visible) return invisible;
  const side: Side = original.side === BackSide ? BackSide : original.side === DoubleSide ? DoubleSide : FrontSide;
  const wireframe = (original as { wireframe?: boolean }).wireframe === true;
  const flatShading = (original as { flatShading?: boolean }).flatShading === true;
  const cacheKey = `${id}|${side}|${wireframe ? 1 : 0}|${flatShading ? 1 : 0}`;
  let material = idMaterials.get(cacheKey);
  if (!material) {
    if (idMaterials.size >= MAX_ID_MATERIALS) {
      for (const m of idMaterials.values()) m.dispose();
      idMaterials.clear();
    }
    // flatShading is not in ShaderMaterial's types, but three's programs read it from any material (FLAT_SHADED).
    material = Object.assign(new ShaderMaterial({
      glslVersion: GLSL3,
      uniforms: { idBytes: { value: new Vector4((id & 255) / 255, (id >> 8) / 255, 0, 1) } },
      vertexShader: idsVertexShader,
      fragmentShader: idsFragmentShader,
      side, wireframe,
      blending: NoBlending, toneMapped: false, fog: false, depthTest: true, depthWrite: true,
    }), { flatShading });
    idMaterials.set(cacheKey, material);
  }
  return material;
}

interface RenderableObject extends Object3D {
  isMesh?: boolean; isLine?: boolean; isPoints?: boolean; isSprite?: boolean;
  material?: Material | Material[];
}

/**
 * Visits every visible object with the id of the element it belongs to and that element's key (the
 * owner of the id), and every tagged object with its key. Invisible subtrees are skipped: three does
 * not draw them either. Iterative: glTF trees can be deep.
 */
function walkScene(
  scene: Object3D, resolution: InstanceResolution,
  visit: (object: RenderableObject, id: number, owner: string | undefined) => void,
  tagged?: (object: Object3D, key: string) => void,
): void {
  const stack: Array<{ object: Object3D; id: number; owner: string | undefined }> = [{ object: scene, id: 0, owner: undefined }];
  while (stack.length) {
    let { object, id, owner } = stack.pop()!;
    if (!object.visible) continue;
    const key: unknown = object.userData?.[ELEMENT_KEY_FIELD];
    // A key the resolution does not know (say, copied in by a glTF's extras) does not change the owner.
    const element = typeof key === "string" ? resolution.elements.get(key) : undefined;
    if (typeof key === "string" && element) {
      id = element.id;
      owner = element.owner;
      tagged?.(object, key);
    }
    visit(object as RenderableObject, id, owner);
    for (const child of object.children) stack.push({ object: child, id, owner });
  }
}

/** What the ids pass changed, to put back whatever happens. */
interface Swapped {
  materials: Array<[RenderableObject, Material | Material[] | undefined]>;
  hidden: Object3D[];
}

/**
 * Renders instance ids (attachment 0) and camera-space normals (attachment 1) of `scene` from `camera`
 * into `target` (made by idsTarget). Every mesh and setting it changes is restored before it returns,
 * also when rendering throws.
 */
export function renderIds(gl: WebGLRenderer, scene: Scene, camera: Camera, target: WebGLRenderTarget, resolution: InstanceResolution): void {
  const swapped: Swapped = { materials: [], hidden: [] };
  const saved = {
    background: scene.background, fog: scene.fog, overrideMaterial: scene.overrideMaterial,
    clearColor: gl.getClearColor(new Color()), clearAlpha: gl.getClearAlpha(), shadowAutoUpdate: gl.shadowMap.autoUpdate,
  };
  try {
    walkScene(scene, resolution, (object, id) => {
      if (object.isMesh && object.material) {
        swapped.materials.push([object, object.material]);
        object.material = Array.isArray(object.material) ? object.material.map((m) => idMaterial(id, m)) : idMaterial(id, object.material);
      } else if (object.isLine || object.isPoints || object.isSprite) {
        // Lines, points and sprites have no surface: no id, no normal.
        swapped.hidden.push(object);
        object.visible = false;
      }
    });
    scene.background = null;
    scene.fog = null;
    scene.overrideMaterial = null;
    gl.setClearColor(0x000000, 0);
    gl.shadowMap.autoUpdate = false; // the colour pass just drew the shadows; this pass reads none
    gl.setRenderTarget(target);
    gl.render(scene, camera);
  } finally {
    for (const [object, material] of swapped.materials) object.material = material;
    for (const object of swapped.hidden) object.visible = true;
    scene.background = saved.background;
    scene.fog = saved.fog;
    scene.overrideMaterial = saved.overrideMaterial;
    gl.setClearColor(saved.clearColor, saved.clearAlpha);
    gl.shadowMap.autoUpdate = saved.shadowAutoUpdate;
  }
}

/** Instance ids from the ids target's attachment 0, top row first. */
export function readMask(gl: WebGLRenderer, target: WebGLRenderTarget): Uint16Array<ArrayBuffer> {
  const { width, height } = target;
  const rgba = new Uint8Array(width * height * 4);
  gl.readRenderTargetPixels(target, 0, 0, width, height, rgba, undefined, 0);
  const mask = new Uint16Array(width * height);
  // WebGL reads the bottom row first.
  for (let y = 0; y < height; y++) {
    for (let x = 0, i = y * width, j = (height - 1 - y) * width * 4; x < width; x++, i++, j += 4) mask[i] = rgba[j] | (rgba[j + 1] << 8);
  }
  return mask;
}

/** Normals (RGB8) from the ids target's attachment 1, top row first. */
export function readNormals(gl: WebGLRenderer, target: WebGLRenderTarget): Uint8Array<ArrayBuffer> {
  const { width, height } = target;
  const rgba = new Uint8Array(width * height * 4);
  gl.readRenderTargetPixels(target, 0, 0, width, height, rgba, undefined, 1);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0, i = y * width * 3, j = (height - 1 - y) * width * 4; x < width; x++, i += 3, j += 4) {
      rgb[i] = rgba[j];
      rgb[i + 1] = rgba[j + 1];
      rgb[i + 2] = rgba[j + 2];
    }
  }
  return rgb;
}

// ---------------------------------------------------------------------------------------------- boxes

interface Boxed extends RenderableObject {
  isInstancedMesh?: boolean; isBatchedMesh?: boolean; isSkinnedMesh?: boolean;
  geometry?: BufferGeometry;
  boundingBox?: Box3 | null;
  computeBoundingBox?: () => void;
}

/** The mesh's own box in its local frame: instanced, batched and skinned meshes box all their instances / their pose. */
function localBox(mesh: Boxed): Box3 | undefined {
  if (mesh.isInstancedMesh || mesh.isBatchedMesh || mesh.isSkinnedMesh) {
    mesh.computeBoundingBox!();
    return mesh.boundingBox ?? undefined;
  }
  const geometry = mesh.geometry;
  if (!geometry) return undefined;
  if (!geometry.boundingBox) geometry.computeBoundingBox();
  return geometry.boundingBox ?? undefined;
}

const scratch = { toOwner: new Matrix4(), worldToOwner: new Matrix4() };

/**
 * For every id > 0 with visible meshes: the box around their geometry in the local frame of the object
 * tagged with the id's owner key, and that object's object-to-world matrix (world frame when the owner
 * has no object). Exact for meshes whose frame differs from the owner's by translation and axis scaling
 * (a built-in tag's mesh is its owner); a rotated child adds the corners of its own box. Call after a
 * render, which brings every matrixWorld up to date.
 */
export function instanceBoxes(scene: Scene, resolution: InstanceResolution): Box3dWire[] {
  const owners = new Map<string, Object3D>();
  const meshes: Array<{ mesh: Boxed; id: number; owner: string | undefined }> = [];
  walkScene(
    scene, resolution,
    (object, id, owner) => {
      if (id > 0 && object.isMesh) meshes.push({ mesh: object as Boxed, id, owner });
    },
    (object, key) => void (owners.has(key) || owners.set(key, object)),
  );
  const boxes = new Map<number, { box: Box3; ownerObject: Object3D | undefined }>();
  for (const { mesh, id, owner } of meshes) {
    const materials = Array.isArray(mesh.material) ? mesh.material : [mesh.material];
    if (!materials.some((m) => m?.visible)) continue;
    const local = localBox(mesh);
    if (!local || local.isEmpty()) continue;
    const ownerObject = owner === undefined ? undefined : owners.get(owner);
    scratch.worldToOwner.copy(ownerObject?.matrixWorld ?? IDENTITY).invert();
    const inOwner = local.clone().applyMatrix4(scratch.toOwner.multiplyMatrices(scratch.worldToOwner, mesh.matrixWorld));
    const entry = boxes.get(id);
    if (entry) entry.box.union(inOwner);
    else boxes.set(id, { box: inOwner, ownerObject });
  }
  return [...boxes].sort(([a], [b]) => a - b).map(([id, { box, ownerObject }]) => ({
    id,
    min: [box.min.x, box.min.y, box.min.z],
    max: [box.max.x, box.max.y, box.max.z],
    objectToWorld: rowMajor4((ownerObject?.matrixWorld ?? IDENTITY).elements),
  }));
}

const IDENTITY = new Matrix4();
