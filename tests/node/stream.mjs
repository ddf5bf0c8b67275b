// The AssemblyAI Node SDK (npm `assemblyai`) as a client of voxgate, for
// tests/integration/test_node_sdk.py. Only the host differs from a client of
// AssemblyAI: the SDK's own StreamingTranscriber, its own temporary-token call.
//
//   node stream.mjs '<scenario JSON>'
//
// The scenario: {"base": "wss://host:port", "https": "https://host:port",
// "apiKey": "..." | "mintWith": "<client key>", "params": {...}, "steps": [...]}.
// Each step is one of
//   {"do": "stream", "pcm": "<file of raw 16 kHz s16le>", "frameBytes": 3200, "delayMs": 5}
//   {"do": "waitTurns", "finals": N, "turns": N, "timeoutMs": 15000}
//   {"do": "forceEndpoint"} | {"do": "update", "config": {...}} | {"do": "close"}
//   {"do": "waitClose", "timeoutMs": 15000}: until the server closes the socket
// Every event is printed as one JSON line on stdout; the exit status is 0 unless the
// driver itself failed. Trust in voxgate's certificate comes from NODE_EXTRA_CA_CERTS.
import { readFileSync } from "node:fs";
import { AssemblyAI } from "assemblyai";

const scenario = JSON.parse(process.argv[2]);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let token;
  if (scenario.mintWith) {
    const minter = new AssemblyAI({ apiKey: scenario.mintWith, streamingBaseUrl: scenario.https });
    try {
      token = await minter.streaming.createTemporaryToken({ expires_in_seconds: 60 });
    } catch (error) {
      emit("token_error", { message: String(error.message) });
      return;
    }
    emit("token", { length: token.length });
  }
  const client = new AssemblyAI({ apiKey: scenario.apiKey ?? "unused", streamingBaseUrl: scenario.https });
  const transcriber = client.streaming.transcriber({
    websocketBaseUrl: scenario.base + "/v3/ws",
    ...(token ? { token } : { apiKey: scenario.apiKey }),
    // The SDK's default 1 s covers the socket and upstream's Begin; a busy test
    // machine with failover behind the gateway can take longer.
    connectTimeout: 10000,
    maxConnectionRetries: 0,
    ...scenario.params,
  });
  const finals = () => turns.filter((t) => t.end_of_turn).length;
  const turns = [];
  transcriber.on("turn", (turn) => {
    turns.push(turn);
    emit("turn", { turn_order: turn.turn_order, end_of_turn: turn.end_of_turn, formatted: turn.turn_is_formatted, transcript: turn.transcript });
  });
  transcriber.on("error", (error) => emit("error", { code: error.code ?? null, message: String(error.message) }));
  let closed = false;
  transcriber.on("close", (code, reason) => {
    closed = true;
    emit("close", { code, reason });
  });
  try {
    const begin = await transcriber.connect();
    emit("begin", { id: begin.id, expires_at: begin.expires_at });
    // Termination has no listener of its own in the SDK (close() awaits it): watch the
    // socket for it, and for the close that follows, as the SDK's own handlers do.
    transcriber.socket.addEventListener("message", ({ data }) => {
      const message = JSON.parse(data.toString());
      if (message.type === "Termination") emit("termination", { audio: message.audio_duration_seconds });
    });
    transcriber.socket.addEventListener("close", ({ code }) => emit("socket_close", { code }));
  } catch (error) {
    emit("connect_error", { code: error.code ?? null, message: String(error.message), name: error.name });
    return;
  }
  for (const step of scenario.steps) {
    if (step.do === "stream") {
      const pcm = readFileSync(step.pcm);
      for (let at = 0; at < pcm.length; at += step.frameBytes) {
        transcriber.sendAudio(pcm.subarray(at, at + step.frameBytes));
        await sleep(step.delayMs ?? 5);
      }
    } else if (step.do === "waitTurns") {
      const deadline = Date.now() + (step.timeoutMs ?? 15000);
      while (finals() < (step.finals ?? 0) || turns.length < (step.turns ?? 0)) {
        if (Date.now() > deadline) {
          emit("timeout", { waited: step });
          break;
        }
        await sleep(20);
      }
      emit("waited", { finals: finals(), turns: turns.length });
    } else if (step.do === "waitClose") {
      const deadline = Date.now() + (step.timeoutMs ?? 15000);
      while (!closed && Date.now() < deadline) await sleep(20);
      if (!closed) emit("timeout", { waited: step });
    } else if (step.do === "forceEndpoint") {
      transcriber.forceEndpoint();
      emit("sent", { what: "ForceEndpoint", finals: finals() });
    } else if (step.do === "update") {
      transcriber.updateConfiguration(step.config);
      emit("sent", { what: "UpdateConfiguration" });
    } else if (step.do === "close") {
      await transcriber.close(true, 10000);
      emit("closed", { finals: finals() });
    }
  }
}

main().catch((error) => {
  emit("driver_error", { message: String(error?.stack ?? error) });
  process.exitCode = 1;
});
