// gstrim view: scenes side by side (or swiped one over the other) under one shared camera, drawn by the
// PlayCanvas engine (npm `playcanvas`, MIT; served beside this file as engine.mjs). The manifest, made by
// gstrim.view.manifest, holds every scene, camera and frame convention already in the engine's frame (y up,
// cameras looking down -z), so this file only loads, draws and moves the camera.
import * as pc from "./engine.mjs";

const state = { ready: false, loaded: 0, settled: 0, errors: [], mode: "side", swipe: 0.5 };
window.gstrim = state;
const $ = (id) => document.getElementById(id);

function fail(message) {
  state.errors.push(message);
  $("error").textContent = state.errors.join("\n");
  console.error(message);
}
window.addEventListener("error", (e) => fail(String(e.message)));
window.addEventListener("unhandledrejection", (e) => fail(String(e.reason)));

const manifest = await (await fetch("manifest.json")).json();
const views = $("views"), canvas = $("canvas"), swipe = $("swipe");
document.title = `gstrim view: ${manifest.scenes.map((scene) => scene.name).join(" | ")}`;
if (manifest.start.bare) {
  $("bar").style.display = "none";
  views.classList.add("bare");
}
$("help").textContent = "drag: orbit \u00b7 right- or shift-drag: pan \u00b7 wheel: zoom \u00b7 W A S D Q E: fly \u00b7 " +
  `frame: ${manifest.up.note}`;

const app = new pc.Application(canvas, {
  graphicsDeviceOptions: { antialias: false, alpha: false, preserveDrawingBuffer: true },
  mouse: null, keyboard: null,
});
app.graphicsDevice.maxPixelRatio = manifest.start.bare ? 1 : window.devicePixelRatio;
app.setCanvasFillMode(pc.FILLMODE_NONE);
app.setCanvasResolution(pc.RESOLUTION_AUTO);
// a Streamed SOG's levels are picked by the engine's LOD streaming within this many Gaussians (engine default: 1M)
state.setBudget = (gaussians) => {
  app.scene.gsplat.splatBudget = gaussians;
  $("budget").value = String(gaussians);
  changed();
};
const streamed = manifest.scenes.some((scene) => scene.levels);
$("budget-control").hidden = !streamed;
if (manifest.start.budget) state.setBudget(manifest.start.budget);
else $("budget").value = String(app.scene.gsplat.splatBudget);
$("budget").addEventListener("change", (e) => state.setBudget(Math.max(1, Number(e.target.value) || 1)));
const resize = () => app.resizeCanvas(views.clientWidth, views.clientHeight);
window.addEventListener("resize", resize);
resize();

// ---- the shared camera: a pose (engine frame), the point it orbits, a vertical field of view ----
const pose = { position: new pc.Vec3(), rotation: new pc.Quat(), target: new pc.Vec3(), fov: 50 };
const vec = (a) => new pc.Vec3(a[0], a[1], a[2]);
const quat = (a) => new pc.Quat(a[0], a[1], a[2], a[3]);
const axis = (x, y, z) => pose.rotation.transformVector(new pc.Vec3(x, y, z));

function setPose(p) {
  pose.position.copy(vec(p.position));
  pose.rotation.copy(quat(p.quaternion));
  pose.fov = p.fov;
  // orbit around the point straight ahead at the distance of the scene's centre
  const centre = vec(manifest.centre);
  const ahead = axis(0, 0, -1);
  const depth = Math.max(new pc.Vec3().sub2(centre, pose.position).dot(ahead), manifest.radius * 0.1);
  pose.target.copy(pose.position).add(ahead.mulScalar(depth));
  changed();
}

function changed() {
  state.settled = 0;
  state.ready = false;
}

function moved() {  // a user's move leaves the chosen camera
  $("camera").value = "";
  changed();
}

function orbit(dxDegrees, dyDegrees) {
  const yaw = new pc.Quat().setFromAxisAngle(pc.Vec3.UP, -dxDegrees);
  const pitch = new pc.Quat().setFromAxisAngle(axis(1, 0, 0), -dyDegrees);
  const turn = new pc.Quat().mul2(yaw, pitch);
  const offset = turn.transformVector(new pc.Vec3().sub2(pose.position, pose.target));
  pose.position.add2(pose.target, offset);
  pose.rotation.mul2(turn, pose.rotation).normalize();
  moved();
}

function pan(dxPixels, dyPixels) {
  const perPixel = 2 * pose.position.distance(pose.target) * Math.tan(pose.fov * Math.PI / 360) /
    Math.max(views.clientHeight, 1);
  const shift = axis(1, 0, 0).mulScalar(-dxPixels * perPixel).add(axis(0, 1, 0).mulScalar(dyPixels * perPixel));
  pose.position.add(shift);
  pose.target.add(shift);
  moved();
}

function dolly(factor) {
  const offset = new pc.Vec3().sub2(pose.position, pose.target).mulScalar(factor);
  pose.position.add2(pose.target, offset);
  moved();
}

function fly(x, y, z) {
  const step = 0.01 * Math.max(pose.position.distance(pose.target), manifest.radius * 0.05);
  const shift = axis(1, 0, 0).mulScalar(x * step).add(axis(0, 1, 0).mulScalar(y * step))
    .add(axis(0, 0, -1).mulScalar(z * step));
  pose.position.add(shift);
  pose.target.add(shift);
  moved();
}

// ---- one layer, one engine camera and one panel per scene; all cameras take the shared pose ----
const background = new pc.Color(...manifest.background);
const upRotation = quat(manifest.up.quaternion);
const cameras = manifest.scenes.map((scene, i) => {
  const layer = new pc.Layer({ name: `scene ${i}` });
  app.scene.layers.push(layer);
  const asset = new pc.Asset(scene.name, "gsplat", { url: scene.url });
  asset.once("load", () => {
    const entity = new pc.Entity(scene.name);
    entity.setLocalRotation(upRotation);
    entity.addComponent("gsplat", { asset, layers: [layer.id] });
    app.root.addChild(entity);
    state.loaded += 1;
    changed();
  });
  asset.once("error", (err) => fail(`${scene.name}: ${err}`));
  app.assets.add(asset);
  app.assets.load(asset);

  const camera = new pc.Entity(`camera ${i}`);
  camera.addComponent("camera", {
    clearColor: background, layers: [layer.id], priority: i,
    nearClip: manifest.clip[0], farClip: manifest.clip[1],
    toneMapping: pc.TONEMAP_LINEAR, gammaCorrection: pc.GAMMA_SRGB,
  });
  // the engine applies a camera's scissorRect only where this flag is set (as for its shadow cameras;
  // `setupViewport` in playcanvas 2.23): the swipe needs it to draw each scene on its side of the bar
  camera.camera.camera._scissorRectClear = true;
  app.root.addChild(camera);

  const panel = document.createElement("div");
  panel.className = "panel";
  panel.hidden = !manifest.start.panels;
  panel.innerHTML = `<b></b><div class="file"></div>` + scene.facts.map(() => "<div></div>").join("");
  panel.children[0].textContent = scene.name;
  panel.children[1].textContent = scene.file;
  scene.facts.forEach((fact, k) => { panel.children[k + 2].textContent = fact; });
  views.appendChild(panel);
  const divider = document.createElement("div");  // the line on a view's left edge, between the views
  divider.className = "divider";
  divider.hidden = i === 0 || !manifest.start.panels;
  views.appendChild(divider);
  return { camera, panel, divider, layer: layer.id, streamed: Boolean(scene.levels) };
});

// a Streamed SOG keeps loading chunks after its index has loaded: the engine says per layer when a frame is
// complete (no chunk pending, the LOD choice made), and the page is ready only once every such layer is
const complete = {};
app.systems.gsplat.on("frame:ready", (camera, layer, ready, loading) => {
  const done = ready && loading === 0;
  if (complete[layer.id] !== done) {
    complete[layer.id] = done;
    changed();
  }
});
const streamingDone = () => cameras.every(({ layer, streamed }) => !streamed || complete[layer] === true);

function layout() {
  const n = cameras.length;
  const swiping = state.mode === "swipe" && n === 2;
  cameras.forEach(({ camera, panel, divider }, i) => {
    divider.style.display = swiping ? "none" : "";
    divider.style.left = `${(100 * i) / n}%`;
    if (swiping) {
      camera.camera.rect = new pc.Vec4(0, 0, 1, 1);
      camera.camera.scissorRect = i === 0 ? new pc.Vec4(0, 0, state.swipe, 1)
        : new pc.Vec4(state.swipe, 0, 1 - state.swipe, 1);
      panel.style.left = i === 0 ? "6px" : "";
      panel.style.right = i === 0 ? "" : "6px";
      panel.style.maxWidth = `calc(${100 * (i === 0 ? state.swipe : 1 - state.swipe)}% - 26px)`;
    } else {
      camera.camera.rect = new pc.Vec4(i / n, 0, 1 / n, 1);
      camera.camera.scissorRect = new pc.Vec4(i / n, 0, 1 / n, 1);
      panel.style.left = `calc(${(100 * i) / n}% + 6px)`;
      panel.style.right = "";
      panel.style.maxWidth = `calc(${100 / n}% - 26px)`;
    }
  });
  swipe.style.display = swiping ? "block" : "none";
  swipe.style.left = `${100 * state.swipe}%`;
  changed();
}

state.setMode = (mode) => {
  state.mode = mode;
  $("mode").value = mode;
  layout();
};
state.setSwipe = (fraction) => {
  state.swipe = Math.min(Math.max(fraction, 0), 1);
  layout();
};
state.setCamera = (index) => {
  $("camera").value = String(index);
  setPose(manifest.cameras[index]);
};
state.orbit = orbit;
// every engine camera's pose, for checks that the views share one camera
state.cameraPoses = () => cameras.map(({ camera }) => [...camera.getPosition().toArray(),
  ...camera.getRotation().toArray(), camera.camera.fov]);

// ---- controls ----
if (cameras.length !== 2) $("mode").querySelector("[value=swipe]").disabled = true;
$("mode").addEventListener("change", (e) => state.setMode(e.target.value));
manifest.cameras.forEach((camera, i) => {
  const option = document.createElement("option");
  option.value = String(i);
  option.textContent = camera.name;
  $("camera").appendChild(option);
});
$("camera").addEventListener("change", (e) => {
  if (e.target.value !== "") state.setCamera(Number(e.target.value));
});
$("home").addEventListener("click", () => {
  $("camera").value = "";
  setPose(manifest.home);
});

let drag = null;
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, pan: e.button !== 0 || e.shiftKey };
  canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  drag.x = e.clientX;
  drag.y = e.clientY;
  if (drag.pan) pan(dx, dy);
  else orbit(dx * 0.3, dy * 0.3);
});
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  dolly(Math.exp(e.deltaY * 0.001));
}, { passive: false });

let swiping = false;
swipe.addEventListener("pointerdown", (e) => { swiping = true; swipe.setPointerCapture(e.pointerId); });
swipe.addEventListener("pointermove", (e) => {
  if (swiping) state.setSwipe((e.clientX - views.getBoundingClientRect().left) / views.clientWidth);
});
swipe.addEventListener("pointerup", () => { swiping = false; });

const FLY_KEYS = { KeyW: [0, 0, 1], KeyS: [0, 0, -1], KeyA: [-1, 0, 0], KeyD: [1, 0, 0], KeyE: [0, 1, 0],
  KeyQ: [0, -1, 0] };
const held = new Set();
window.addEventListener("keydown", (e) => { if (FLY_KEYS[e.code] && e.target.tagName !== "SELECT") held.add(e.code); });
window.addEventListener("keyup", (e) => held.delete(e.code));

// ---- every frame: the held keys fly, the cameras take the shared pose ----
app.on("update", () => {
  held.forEach((code) => fly(...FLY_KEYS[code]));
  for (const { camera } of cameras) {
    camera.setPosition(pose.position);
    camera.setRotation(pose.rotation);
    camera.camera.fov = pose.fov;
  }
});
app.on("frameend", () => {
  if (state.loaded === cameras.length) state.settled += 1;
  // a few frames after the last change, so that the engine's sort (in a worker) has caught up
  state.ready = state.loaded === cameras.length && streamingDone() && state.settled >= manifest.start.settle_frames;
});

state.setMode(manifest.start.mode);
if (manifest.start.camera !== null) state.setCamera(manifest.start.camera);
else setPose(manifest.home);
app.start();
state.started = true;  // every hook above is in place (browser.open_page waits for this)
