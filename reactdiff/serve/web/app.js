// The live page: streams a speaker (a clip of the service's shards, a wav file or the microphone) to ws://.../ws
// in real time and draws the listener frames it gets back as a grey FaceVerse mesh with WebGL2. The camera is the
// REACT renderer's (distance 10 on +z, focal 1315 px at 224 px), as reactdiff/render/faceverse.py projects.
"use strict";

const FV_DIM = 58, N_EXP = 52, RATE = 16000, FOCAL_224 = 1315.0, DISTANCE = 10.0;
const page = {framesReceived: 0, framesDrawn: 0, computeMs: [], e2eMs: [], errors: [], done: false, mode: null,
              messages: 0};
window.reactdiffPage = page;  // what the browser test reads

let info = null, mesh = null, gl = null, glState = null, ws = null, timer = null, micNodes = null;
let listener = [], sendTimes = [], firstArrival = null, lastDrawn = -1;

const $ = (id) => document.getElementById(id);
function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  if (error) page.errors.push(text);
}

async function init() {
  info = await (await fetch("/info")).json();
  if (info.clips) {
    const clips = await (await fetch("/clips")).json();
    for (const c of clips) {
      const opt = document.createElement("option");
      opt.value = c.row;
      opt.textContent = `${c.row}: ${c.key} ${c.role} (${c.frames} frames)`;
      opt.dataset.key = c.key;
      opt.dataset.role = c.role;
      $("clip").appendChild(opt);
    }
  } else {
    $("play-clip").disabled = true;
  }
  if (!info.audio_only) {  // the export needs the speaker's face: wav files and the microphone cannot drive it
    $("play-wav").disabled = $("mic").disabled = true;
  }
  if (info.mesh) {
    mesh = parseMesh(await (await fetch("/mesh.bin")).arrayBuffer());
    setupGL();
  }
  status(`ready: ${info.fps} fps, window ${info.window} frames (hop ${info.window - info.overlap}), ` +
         `${info.steps} steps${info.audio_only ? "" : "; audio-only input: " +
         "not supported by this export (trained without model.face_dropout)"}` +
         (info.mesh ? "" : "; no FaceVerse file given (--faceverse): frames are counted, not drawn"));
  $("play-clip").onclick = () => streamClip().catch((e) => status(String(e), true));
  $("play-wav").onclick = () => streamWav().catch((e) => status(String(e), true));
  $("mic").onclick = () => streamMic().catch((e) => status(String(e), true));
  $("stop").onclick = () => stop();
  requestAnimationFrame(loop);
}

// ---- the socket
function open(settings) {
  stop();
  if (ws) {  // the previous session's late messages must not land in this one
    ws.onmessage = ws.onerror = ws.onclose = null;
    ws.close();
  }
  listener = []; sendTimes = []; firstArrival = null; lastDrawn = -1;
  page.done = false; page.framesReceived = 0; page.computeMs = []; page.e2eMs = [];
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${location.host}/ws`);
    ws = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => socket.send(JSON.stringify({type: "open", k: Number($("k").value) || 1, ...settings}));
    socket.onclose = (event) => {
      if (timer !== null) { clearInterval(timer); timer = null; }
      if (!page.done && event.code !== 1000) status(`the session closed: ${event.code} ${event.reason}`, true);
      reject(new Error(`closed before it was ready (${event.code})`));
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      page.messages += 1;
      if (msg.type === "ready") resolve(msg);
      else if (msg.type === "frames") receive(msg);
      else if (msg.type === "done") { page.done = true; status(`done: ${msg.frames} listener frames`); }
      else if (msg.type === "error") { status(`service: ${msg.message}`, true); reject(new Error(msg.message)); }
    };
    socket.onerror = () => reject(new Error("the socket failed"));
  });
}

function tagged(tag, floats) {
  const out = new Uint8Array(4 + floats.byteLength);
  out.set(new TextEncoder().encode(tag), 0);
  out.set(new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength), 4);
  return out.buffer;
}

function receive(msg) {
  const now = performance.now();
  if (firstArrival === null) firstArrival = now;
  for (let i = 0; i < msg.count; i++) listener[msg.start + i] = msg.face[0][i];  // reaction 0 is drawn
  page.framesReceived = Math.max(page.framesReceived, msg.start + msg.count);
  for (const w of msg.windows) page.computeMs.push(w.compute_ms);
  for (let f = msg.start; f < msg.start + msg.count; f++) {
    if (sendTimes[f] !== undefined && !msg.final) page.e2eMs.push(now - sendTimes[f]);
  }
  readout();
}

function percentile(xs, p) {
  if (!xs.length) return "-";
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(0);
}

function readout() {
  $("c50").textContent = percentile(page.computeMs, 0.5);
  $("c95").textContent = percentile(page.computeMs, 0.95);
  $("clast").textContent = page.computeMs.length ? page.computeMs[page.computeMs.length - 1].toFixed(0) : "-";
  $("e50").textContent = percentile(page.e2eMs, 0.5);
  $("e95").textContent = percentile(page.e2eMs, 0.95);
  $("elast").textContent = page.e2eMs.length ? page.e2eMs[page.e2eMs.length - 1].toFixed(0) : "-";
}

function stop() {
  if (timer !== null) { clearInterval(timer); timer = null; }
  if (micNodes !== null) {
    micNodes.stream.getTracks().forEach((t) => t.stop());
    micNodes.ctx.close();
    micNodes = null;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "end"}));
  } else if (ws && ws.readyState === WebSocket.OPEN && !page.done && page.mode !== null) {
    ws.send(JSON.stringify({type: "end"}));
  }
  page.mode = null;
}

// Stream in real time: every tick, send what the speaker's clock has reached (audio and 3DMM of those frames).
function realTime(frames, sendUpTo) {
  const fps = info.fps, t0 = performance.now();
  let sent = 0;
  timer = setInterval(() => {
    const due = Math.min(frames, Math.floor((performance.now() - t0) / 1000 * fps) + 1);
    if (due > sent) {
      sendUpTo(sent, due);
      for (let f = sent; f < due; f++) sendTimes[f] = performance.now();
      sent = due;
    }
    if (sent >= frames) {
      clearInterval(timer); timer = null;
      sendUpTo(frames, null);
      ws.send(JSON.stringify({type: "end"}));
      page.mode = null;
    }
  }, 20);
}

async function streamClip() {
  const opt = $("clip").selectedOptions[0];
  const row = opt.value;
  const face = new Float32Array(await (await fetch(`/clip/${row}/face.f32`)).arrayBuffer());
  const audio = new Float32Array(await (await fetch(`/clip/${row}/audio.f32`)).arrayBuffer());
  const frames = face.length / FV_DIM, spf = RATE / info.fps;
  await open({key: opt.dataset.key, role: opt.dataset.role, face: true});
  page.mode = "clip";
  status(`streaming clip ${row} (${frames} frames) in real time`);
  realTime(frames, (lo, hi) => {
    if (hi === null) {  // the audio past the last frame
      if (audio.length > frames * spf) ws.send(tagged("PCM ", audio.subarray(Math.round(frames * spf))));
      return;
    }
    ws.send(tagged("PCM ", audio.subarray(Math.round(lo * spf), Math.round(hi * spf))));
    ws.send(tagged("3DMM", face.subarray(lo * FV_DIM, hi * FV_DIM)));
  });
}

async function streamWav() {
  const file = $("wav").files[0];
  if (!file) throw new Error("choose a wav file first");
  const decoder = new AudioContext();
  const decoded = await decoder.decodeAudioData(await file.arrayBuffer());
  decoder.close();
  const offline = new OfflineAudioContext(1, Math.ceil(decoded.duration * RATE), RATE);
  const src = offline.createBufferSource();
  src.buffer = decoded; src.connect(offline.destination); src.start();
  const audio = (await offline.startRendering()).getChannelData(0);
  const spf = RATE / info.fps, frames = Math.floor(audio.length / spf);
  await open({key: file.name, face: false});
  page.mode = "wav";
  status(`streaming ${file.name} (${(audio.length / RATE).toFixed(1)} s) in real time, audio only`);
  realTime(frames, (lo, hi) => {
    const end = hi === null ? audio.length : Math.round(hi * spf);
    if (hi === null && Math.round(lo * spf) >= end) return;
    ws.send(tagged("PCM ", clip01(audio.subarray(Math.round(lo * spf), end))));
  });
}

function clip01(x) {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.max(-1, Math.min(1, x[i]));
  return out;
}

async function streamMic() {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const ctx = new AudioContext({sampleRate: RATE});
  await ctx.resume();
  await open({key: "microphone", face: false});
  page.mode = "mic";
  const src = ctx.createMediaStreamSource(stream);
  const proc = ctx.createScriptProcessor(2048, 1, 1);
  const mute = ctx.createGain(); mute.gain.value = 0;
  let samples = 0;
  const spf = RATE / info.fps;
  proc.onaudioprocess = (e) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const x = clip01(e.inputBuffer.getChannelData(0));
    ws.send(tagged("PCM ", x));
    const now = performance.now();
    for (let f = Math.floor(samples / spf); f < Math.floor((samples + x.length) / spf); f++) sendTimes[f] = now;
    samples += x.length;
  };
  src.connect(proc); proc.connect(mute); mute.connect(ctx.destination);
  micNodes = {stream, ctx, proc};
  status("listening to the microphone (Stop ends the session)");
}

// ---- drawing
function parseMesh(buffer) {
  const [v, f] = new Uint32Array(buffer, 0, 2);
  const mean = new Float32Array(buffer, 8, v * 3);
  const exp = new Float32Array(buffer, 8 + 4 * v * 3, N_EXP * v * 3);
  const tri = new Uint32Array(buffer, 8 + 4 * (v * 3 + N_EXP * v * 3), f * 3);
  return {v, f, mean, exp, tri, shape: new Float32Array(v * 3)};
}

const VERTEX = `#version 300 es
in vec3 shape;
uniform mat3 R;
uniform vec3 t;
uniform float scale;
out vec3 vpos;
void main() {
  vec3 w = R * shape + t;
  float depth = ${DISTANCE.toFixed(1)} - w.z;
  vpos = vec3(w.xy, -depth);
  float n = 1.0, f = 40.0;
  gl_Position = vec4(scale * w.x, scale * w.y, depth * (f + n) / (f - n) - 2.0 * f * n / (f - n), depth);
}`;
const FRAGMENT = `#version 300 es
precision highp float;
in vec3 vpos;
out vec4 colour;
void main() {
  vec3 n = normalize(cross(dFdx(vpos), dFdy(vpos)));
  float d = abs(dot(n, vec3(0.0, 0.0, 1.0)));
  colour = vec4(vec3(0.78) * (0.25 + 0.75 * d), 1.0);
}`;

function setupGL() {
  gl = $("view").getContext("webgl2", {preserveDrawingBuffer: true, antialias: false});
  if (!gl) { status("this browser has no WebGL2", true); return; }
  const compile = (kind, src) => {
    const s = gl.createShader(kind); gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  };
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(prog, compile(gl.FRAGMENT_SHADER, FRAGMENT));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  const vbo = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, vbo);
  gl.bufferData(gl.ARRAY_BUFFER, mesh.shape.byteLength, gl.DYNAMIC_DRAW);
  const loc = gl.getAttribLocation(prog, "shape");
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
  const ibo = gl.createBuffer();
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ibo);
  gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, mesh.tri, gl.STATIC_DRAW);
  glState = {prog, vbo, R: gl.getUniformLocation(prog, "R"), t: gl.getUniformLocation(prog, "t"),
             scale: gl.getUniformLocation(prog, "scale")};
  gl.enable(gl.DEPTH_TEST);
  clear();
}

function clear() {
  gl.viewport(0, 0, gl.canvas.width, gl.canvas.height);
  gl.clearColor(0.1, 0.1, 0.12, 1.0);
  gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
}

function rotation(x, y, z) {  // R = Rz Ry Rx, column-major for WebGL
  const cx = Math.cos(x), sx = Math.sin(x), cy = Math.cos(y), sy = Math.sin(y), cz = Math.cos(z), sz = Math.sin(z);
  const r = [[cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
             [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
             [-sy, cy * sx, cy * cx]];
  return new Float32Array([r[0][0], r[1][0], r[2][0], r[0][1], r[1][1], r[2][1], r[0][2], r[1][2], r[2][2]]);
}

function draw(coeffs) {
  const {mean, exp, shape, v} = mesh, n = v * 3;
  shape.set(mean);
  for (let k = 0; k < N_EXP; k++) {
    const c = coeffs[k];
    if (Math.abs(c) < 1e-5) continue;
    const base = k * n;
    for (let i = 0; i < n; i++) shape[i] += c * exp[base + i];
  }
  clear();
  gl.useProgram(glState.prog);
  gl.bindBuffer(gl.ARRAY_BUFFER, glState.vbo);
  gl.bufferSubData(gl.ARRAY_BUFFER, 0, shape);
  gl.uniformMatrix3fv(glState.R, false, rotation(coeffs[52], coeffs[53], coeffs[54]));
  gl.uniform3f(glState.t, coeffs[55], coeffs[56], coeffs[57]);
  gl.uniform1f(glState.scale, FOCAL_224 / 112.0);
  gl.drawElements(gl.TRIANGLES, mesh.tri.length, gl.UNSIGNED_INT, 0);
}

function loop(now) {
  // play the listener at the speaker's frame rate from its first frame's arrival, holding when frames are late
  if (firstArrival !== null && page.framesReceived > 0) {
    const target = Math.min(page.framesReceived - 1, Math.floor((now - firstArrival) / 1000 * info.fps));
    if (target !== lastDrawn && listener[target] !== undefined) {
      if (gl && glState) draw(listener[target]);
      lastDrawn = target;
      page.framesDrawn += 1;
    }
  }
  requestAnimationFrame(loop);
}

// pixels brighter than the background: how the browser test sees that a face was drawn
page.litPixels = () => {
  if (!gl) return 0;
  const w = gl.canvas.width, h = gl.canvas.height, px = new Uint8Array(w * h * 4);
  gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
  let lit = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > 60) lit++;
  return lit;
};

init().catch((e) => status(`could not start: ${e}`, true));
