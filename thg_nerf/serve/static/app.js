// thg-nerf live page: audio (microphone or file) -> 16 kHz PCM chunks over a WebSocket; JPEG frames back,
// shown in step with the audio, which is delayed by the measured pipeline latency. No build step, no CDN.
"use strict";

const CHUNK = 320;            // samples per message: 20 ms at 16 kHz
const RATE = 16000;
const $ = (id) => document.getElementById(id);

// State readable from outside (tests, console): window.thg
const thg = window.thg = {
  state: "idle", received: 0, rendered: 0, dropped: 0, latencies: [], hello: null, done: false, errors: [],
};

let ws = null, ctx = null, source = null, tap = null, delay = null, monitorGain = null, media = null;
let seq = 0, t0 = null, pcm = [], resampler = null, queue = [], arrivals = [], delayMs = 300, lastDelaySet = 0;

function setState(s) { thg.state = s; $("s-state").textContent = s; }

class Resampler {  // any input rate -> 16 kHz: the mean of the input samples that fall in each output sample
  constructor(inRate) { this.r = inRate / RATE; this.buf = new Float32Array(0); this.t = 0; }
  push(x) {
    const buf = new Float32Array(this.buf.length + x.length);
    buf.set(this.buf); buf.set(x, this.buf.length);
    const out = [];
    let t = this.t;
    while (t + this.r <= buf.length) {
      const a = Math.floor(t), b = Math.max(a + 1, Math.floor(t + this.r));
      let s = 0;
      for (let i = a; i < b; i++) s += buf[i];
      out.push(s / (b - a));
      t += this.r;
    }
    const drop = Math.min(Math.floor(t), buf.length);
    this.buf = buf.slice(drop); this.t = t - drop;
    return out;
  }
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const v = values.slice().sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor(p / 100 * v.length))];
}

function connect() {
  return new Promise((resolve, reject) => {
    const token = new URLSearchParams(location.search).get("token");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + location.pathname
      .replace(/[^/]*$/, "") + "ws" + (token ? "?token=" + encodeURIComponent(token) : "");
    setState("connecting");
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return onText(JSON.parse(ev.data), resolve);
      onFrame(ev.data);
    };
    ws.onerror = () => { thg.errors.push("websocket error"); reject(new Error("connection failed")); };
    ws.onclose = (ev) => { setState(thg.done ? "finished" : "closed" + (ev.reason ? ": " + ev.reason : "")); stop(false); };
  });
}

function onText(msg, resolve) {
  if (msg.type === "hello") {
    thg.hello = msg;
    $("view").width = msg.width; $("view").height = msg.height;
    delayMs = msg.lookahead_ms + 150;
    setState("connected");
    resolve();
  } else if (msg.type === "stats") {
    thg.rendered = Math.max(thg.rendered, msg.rendered); thg.dropped = Math.max(thg.dropped, msg.dropped);
  } else if (msg.type === "done") {
    thg.done = true; setState("finished");
  } else if (msg.type === "error") {
    thg.errors.push(msg.message); setState("error: " + msg.message);
  }
}

function onFrame(buf) {
  const n = new DataView(buf).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const now = performance.now();
  thg.received += 1;
  thg.rendered = Math.max(thg.rendered, head.rendered); thg.dropped = Math.max(thg.dropped, head.dropped);
  if (head.sent !== null) { thg.latencies.push(now - head.sent); if (thg.latencies.length > 300) thg.latencies.shift(); }
  arrivals.push(now);
  createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" })).then((img) => {
    queue.push({ due: t0 + 1000 * head.t + delayMs, img });
  });
}

function draw() {  // show the newest frame that is due; frames are due when their (delayed) audio plays
  const now = performance.now();
  let show = null;
  while (queue.length && queue[0].due <= now) { if (show) show.img.close(); show = queue.shift(); }
  if (show) { $("view").getContext("2d").drawImage(show.img, 0, 0); show.img.close(); }
  requestAnimationFrame(draw);
}

function updateDelay() {  // audio delay = latency p95 + 30 ms, changed only when it drifts by > 40 ms
  const now = performance.now();
  if (thg.latencies.length < 20 || now - lastDelaySet < 2000) return;
  const want = percentile(thg.latencies, 95) + 30;
  if (Math.abs(want - delayMs) > 40) {
    delayMs = want; lastDelaySet = now;
    if (delay) delay.delayTime.setTargetAtTime(Math.min(4.9, delayMs / 1000), ctx.currentTime, 0.2);
  }
}

function showStats() {
  const p50 = percentile(thg.latencies, 50), p95 = percentile(thg.latencies, 95);
  const now = performance.now();
  arrivals = arrivals.filter((t) => now - t < 2000);
  $("s-latency").textContent = isNaN(p50) ? "–" : `${p50.toFixed(0)} / ${p95.toFixed(0)} ms`;
  $("s-fps").textContent = (arrivals.length / 2).toFixed(1);
  $("s-frames").textContent = `${thg.received} / ${thg.rendered}`;
  $("s-dropped").textContent = `${thg.dropped}`;
  $("s-delay").textContent = `${delayMs.toFixed(0)} ms`;
  updateDelay();
}

function sendPcm(samples) {
  for (const s of samples) pcm.push(s);
  while (pcm.length >= CHUNK && ws && ws.readyState === WebSocket.OPEN) {
    const chunk = pcm.splice(0, CHUNK);
    const msg = new ArrayBuffer(12 + 2 * CHUNK);
    const dv = new DataView(msg);
    const now = performance.now();
    if (t0 === null) t0 = now;
    dv.setUint32(0, seq++, true);
    dv.setFloat64(4, now, true);
    for (let i = 0; i < CHUNK; i++) dv.setInt16(12 + 2 * i, Math.max(-32768, Math.min(32767, Math.round(chunk[i] * 32767))), true);
    ws.send(msg);
  }
}

async function start(makeSource, monitor) {
  stop(true);
  thg.received = 0; thg.rendered = 0; thg.dropped = 0; thg.latencies = []; thg.done = false;
  seq = 0; t0 = null; pcm = []; queue = [];
  try {
    ctx = new AudioContext();
    await ctx.resume();
    await connect();
    source = await makeSource(ctx);
  } catch (e) {
    thg.errors.push(String(e)); setState("error: " + e.message); stop(false); return;
  }
  resampler = new Resampler(ctx.sampleRate);
  tap = ctx.createScriptProcessor(1024, 1, 1);
  tap.onaudioprocess = (ev) => sendPcm(resampler.push(ev.inputBuffer.getChannelData(0)));
  const mute = ctx.createGain(); mute.gain.value = 0;
  source.connect(tap); tap.connect(mute); mute.connect(ctx.destination);
  delay = ctx.createDelay(5.0); delay.delayTime.value = delayMs / 1000;
  monitorGain = ctx.createGain(); monitorGain.gain.value = monitor ? 1 : 0;
  $("monitor").checked = monitor;
  source.connect(delay); delay.connect(monitorGain); monitorGain.connect(ctx.destination);
  if (source.start) {
    source.onended = () => { sendPcm(new Array(CHUNK - (pcm.length % CHUNK || CHUNK)).fill(0));
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" })); };
    source.start();
  }
  setState("streaming");
  $("stop").disabled = false;
}

function stop(closeSocket) {
  if (tap) { tap.onaudioprocess = null; tap.disconnect(); tap = null; }
  if (source) { try { if (source.stop) source.stop(); } catch (e) { /* already stopped */ } source.disconnect(); source = null; }
  if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
  if (ctx) { ctx.close(); ctx = null; }
  if (closeSocket && ws) { ws.onclose = null; ws.close(); ws = null; }
  $("stop").disabled = true;
}

$("mic").onclick = () => start(async (c) => {
  media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  return c.createMediaStreamSource(media);
}, $("monitor").checked);

async function playFile(file) {
  await start(async (c) => {
    const src = c.createBufferSource();
    src.buffer = await c.decodeAudioData(await file.arrayBuffer());
    return src;
  }, true);
}

$("file").onchange = (ev) => { if (ev.target.files.length) playFile(ev.target.files[0]); };
$("stop").onclick = () => { stop(true); setState("stopped"); };
$("monitor").onchange = (ev) => { if (monitorGain) monitorGain.gain.value = ev.target.checked ? 1 : 0; };
const stage = $("stage");
stage.ondragover = (ev) => { ev.preventDefault(); stage.classList.add("dragging"); };
stage.ondragleave = () => stage.classList.remove("dragging");
stage.ondrop = (ev) => { ev.preventDefault(); stage.classList.remove("dragging");
  if (ev.dataTransfer.files.length) playFile(ev.dataTransfer.files[0]); };
if (!navigator.mediaDevices) { $("mic").disabled = true; $("mic").title = "the microphone needs https or localhost"; }
setInterval(showStats, 500);
requestAnimationFrame(draw);
