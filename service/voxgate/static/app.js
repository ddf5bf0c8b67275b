// voxgate demo page: microphone -> AudioWorklet (16 kHz PCM s16le, 100 ms frames)
// -> WebSocket /v3/ws?token=... -> partial and final turns shown live.
// No build step: plain browser JavaScript.
"use strict";

const SAMPLE_RATE = 16000;
const FRAME_SAMPLES = 1600; // 100 ms per message (AssemblyAI takes 50-1000 ms)
const MAX_QUEUED_FRAMES = 20; // audio held until Begin: 2 s at most, the oldest dropped
const TERMINATION_TIMEOUT_MS = 15000; // after Stop, wait this long for Termination
const QUERY =
  "sample_rate=" + SAMPLE_RATE +
  "&encoding=pcm_s16le&format_turns=true&speech_model=universal-streaming-english";

const $ = (id) => document.getElementById(id);
const ui = {
  record: $("record"), stop: $("stop"), status: $("status"), turns: $("turns"),
  billing: $("billing"), billingDetail: $("billing-detail"),
  problem: $("problem"), problemTitle: $("problem-title"), problemText: $("problem-text"),
  token: $("token"),
};

// One recording at a time; everything it holds is released in finish().
let run = null;

class ShownError extends Error {
  constructor(title, text) { super(text); this.title = title; }
}

function setStatus(text) { ui.status.textContent = text; }

function showProblem(title, text) {
  ui.problemTitle.textContent = title;
  ui.problemText.textContent = text;
  ui.problem.hidden = false;
}

function isPaymentRequired(text) {
  return /upstream payment required/i.test(text || "");
}

async function fetchToken() {
  const pasted = ui.token.value.trim();
  if (pasted) {
    ui.token.value = ""; // single use: do not offer it twice
    return pasted;
  }
  let response;
  try {
    response = await fetch("token", { method: "POST", cache: "no-store" });
  } catch (err) {
    throw new ShownError("The gateway can not be reached", String(err));
  }
  let body = {};
  try { body = await response.json(); } catch (err) { /* not JSON: keep {} */ }
  if (!response.ok || typeof body.token !== "string") {
    const why = body.error || ("the token helper answered HTTP " + response.status);
    throw new ShownError("No token for this page", why);
  }
  return body.token;
}

function renderTurn(turn) {
  let el = run.turnElements.get(turn.turn_order);
  if (!el) {
    el = document.createElement("p");
    el.dataset.order = String(turn.turn_order);
    ui.turns.appendChild(el);
    run.turnElements.set(turn.turn_order, el);
  }
  el.className = "turn " + (turn.end_of_turn ? "final" : "partial");
  el.textContent = turn.transcript || "…";
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (err) { return; }
  switch (msg.type) {
    case "Begin":
      run.began = true;
      ui.stop.disabled = false;
      setStatus("Listening… speak now.");
      for (const frame of run.queue.splice(0)) run.ws.send(frame);
      break;
    case "Turn":
      renderTurn(msg);
      break;
    case "Termination":
      run.terminated = true;
      setStatus("Done: " + Number(msg.audio_duration_seconds || 0).toFixed(1) + " s of audio transcribed.");
      break;
    case "Error":
      run.errorText = msg.error || "";
      break;
    default:
      break; // SpeechStarted, Heartbeat, ...: nothing to show
  }
}

function onClose(event) {
  const current = run;
  if (!current) return;
  const text = current.errorText || event.reason || "";
  if (event.code === 1000 || (current.terminated && event.code === 1012)) {
    if (!current.terminated) setStatus("Session ended.");
  } else if (isPaymentRequired(text)) {
    ui.billingDetail.textContent = "Gateway said: " + text;
    ui.billing.hidden = false;
    setStatus("Not transcribing: billing needed.");
  } else if (event.code === 1008) {
    showProblem("Not allowed", text || "The gateway refused the connection (1008).");
    setStatus("Refused.");
  } else if (event.code === 3008) {
    showProblem("Session time is up", text);
    setStatus("Session expired.");
  } else {
    showProblem("The session ended with an error (" + event.code + ")",
      text || "The connection was lost. Try again in a moment.");
    setStatus("Stopped.");
  }
  finish();
}

function sendAudio(buffer) {
  if (!run || run.stopping) return;
  if (run.began && run.ws.readyState === WebSocket.OPEN) {
    run.ws.send(buffer);
  } else {
    run.queue.push(buffer);
    if (run.queue.length > MAX_QUEUED_FRAMES) run.queue.shift();
  }
}

function stopAudio(r) {
  if (r.stream) r.stream.getTracks().forEach((t) => t.stop());
  if (r.node) { r.node.port.onmessage = null; r.node.disconnect(); }
  if (r.context && r.context.state !== "closed") r.context.close().catch(() => {});
  r.stream = r.node = null;
}

function finish() {
  if (!run) return;
  stopAudio(run);
  clearTimeout(run.timer);
  run = null;
  ui.record.disabled = false;
  ui.stop.disabled = true;
}

async function record() {
  ui.record.disabled = true;
  ui.billing.hidden = true;
  ui.problem.hidden = true;
  ui.turns.textContent = "";
  run = {
    ws: null, context: null, stream: null, node: null, queue: [], began: false,
    stopping: false, terminated: false, errorText: "", timer: 0, turnElements: new Map(),
  };
  const r = run;
  try {
    // Created inside the click so the browser lets it run.
    r.context = new AudioContext();
    setStatus("Asking for the microphone…");
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      throw new ShownError("This page needs a secure context",
        "Open it over https:// or on localhost; the microphone and AudioWorklet are unavailable here.");
    }
    try {
      r.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (err) {
      throw new ShownError("No microphone", "The browser gave no microphone: " + err.message);
    }
    await r.context.audioWorklet.addModule("pcm-worklet.js");
    r.node = new AudioWorkletNode(r.context, "pcm-resampler", {
      processorOptions: { targetRate: SAMPLE_RATE, frameSamples: FRAME_SAMPLES },
    });
    r.node.port.onmessage = (e) => sendAudio(e.data);
    const mute = r.context.createGain();
    mute.gain.value = 0; // keep the graph pulled without playing the mic back
    r.context.createMediaStreamSource(r.stream).connect(r.node);
    r.node.connect(mute).connect(r.context.destination);
    await r.context.resume();

    setStatus("Getting a token…");
    const token = await fetchToken();
    if (run !== r) return;
    const url = new URL("../v3/ws?" + QUERY + "&token=" + encodeURIComponent(token), location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    setStatus("Connecting…");
    r.ws = new WebSocket(url.toString());
    r.ws.binaryType = "arraybuffer";
    r.ws.onmessage = onMessage;
    r.ws.onclose = onClose;
  } catch (err) {
    if (err instanceof ShownError) showProblem(err.title, err.message);
    else showProblem("Could not start", String(err));
    setStatus("Stopped.");
    finish();
  }
}

function stop() {
  const r = run;
  if (!r || r.stopping) return;
  r.stopping = true;
  ui.stop.disabled = true;
  stopAudio(r);
  if (r.ws && r.ws.readyState === WebSocket.OPEN) {
    r.ws.send(JSON.stringify({ type: "Terminate" }));
    setStatus("Finishing… waiting for the last words.");
    // The gateway answers Terminate with the last turns, Termination, then 1000.
    r.timer = setTimeout(() => { if (r.ws.readyState !== WebSocket.CLOSED) r.ws.close(); },
      TERMINATION_TIMEOUT_MS);
  } else {
    if (r.ws) r.ws.close();
    finish();
    setStatus("Stopped.");
  }
}

ui.record.addEventListener("click", record);
ui.stop.addEventListener("click", stop);
