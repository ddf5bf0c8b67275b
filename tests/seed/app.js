// AssemblyAI's browser example, unchanged but for the host: the page gets a temporary
// token from its own server (/token), opens the SDK's StreamingTranscriber with it,
// records the microphone at 16 kHz and shows the turns. The gateway's wss:// URL
// comes in the page's query (?ws=...), where the example has AssemblyAI's.
const { StreamingTranscriber } = assemblyai;
const $ = (id) => document.getElementById(id);
const websocketBaseUrl = new URLSearchParams(location.search).get("ws");
let recording = null;

function showTurn(turn) {
  let line = $("turns").querySelector(`[data-order="${turn.turn_order}"]`);
  if (!line) {
    line = document.createElement("p");
    line.dataset.order = turn.turn_order;
    $("turns").appendChild(line);
  }
  line.className = turn.end_of_turn ? "turn final" : "turn partial";
  line.textContent = turn.transcript || "…";
}

function explain(error) {
  // voxgate closes with 1008 "Upstream payment required: ..." when every key of its
  // pool needs billing: say what it means and who can fix it, instead of failing silently.
  if (error.code === 1008 && /payment required/i.test(error.message)) {
    $("billing").hidden = false;
    $("billing-detail").textContent = error.message;
  } else {
    $("problem").hidden = false;
    $("problem").textContent = `Transcription failed (${error.code ?? "no code"}): ${error.message}`;
  }
  $("status").textContent = "Stopped";
}

async function record() {
  $("record").disabled = true;
  $("billing").hidden = $("problem").hidden = true;
  $("status").textContent = "Connecting…";
  const answer = await fetch("/token");
  const body = await answer.json();
  if (!answer.ok) {
    explain({ code: answer.status, message: body.error ?? "no token" });
    $("record").disabled = false;
    return;
  }
  const transcriber = new StreamingTranscriber({
    websocketBaseUrl,
    token: body.token,
    sampleRate: 16000,
    formatTurns: true,
    connectTimeout: 10000,
  });
  transcriber.on("turn", showTurn);
  transcriber.on("error", explain);
  try {
    await transcriber.connect();
  } catch (error) {
    explain(error);
    $("record").disabled = false;
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const context = new AudioContext({ sampleRate: 16000 });
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1); // 256 ms at 16 kHz
  processor.onaudioprocess = (event) => {
    const samples = event.inputBuffer.getChannelData(0);
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      pcm[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    }
    transcriber.sendAudio(pcm.buffer);
  };
  source.connect(processor);
  processor.connect(context.destination);
  recording = { transcriber, stream, context, processor };
  $("status").textContent = "Recording";
  $("stop").disabled = false;
}

async function stop() {
  $("stop").disabled = true;
  const { transcriber, stream, context, processor } = recording;
  processor.disconnect();
  stream.getTracks().forEach((track) => track.stop());
  await context.close();
  await transcriber.close(); // waits for Termination
  $("status").textContent = "Done";
  $("record").disabled = false;
}

$("record").onclick = () => record().catch(explain);
$("stop").onclick = () => stop().catch(explain);
