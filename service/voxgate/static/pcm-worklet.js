// AudioWorklet processor: microphone audio (the context's rate, usually 44.1 or 48 kHz,
// float, maybe stereo) -> 16 kHz mono PCM s16le, posted to the page in frames of
// `frameSamples` samples (1600 = 100 ms; AssemblyAI takes 50-1000 ms per message).
//
// Resampling: a one-pole low-pass (cut-off just under the new Nyquist, to keep
// aliasing down), then linear interpolation at a fractional read position that
// runs on across the 128-sample render quanta.

class PcmResampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = opts.frameSamples || 1600;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    // One-pole low-pass coefficient for a cut-off at 0.45 x the target rate.
    const cutoff = Math.min(0.45 * this.targetRate, 0.45 * sampleRate);
    this.alpha = 1 - Math.exp((-2 * Math.PI * cutoff) / sampleRate);
    this.lowpass = 0;
    this.t = 0; // read position in the current quantum; -1..0 means between prev and x[0]
    this.prev = 0; // last (filtered) sample of the previous quantum
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0 || channels[0].length === 0) {
      return true; // no input connected yet (or it ended): keep the node alive
    }
    const len = channels[0].length;
    const x = new Float32Array(len);
    for (let c = 0; c < channels.length; c++) {
      const data = channels[c];
      for (let i = 0; i < len; i++) x[i] += data[i] / channels.length;
    }
    let y = this.lowpass;
    for (let i = 0; i < len; i++) {
      y += this.alpha * (x[i] - y);
      x[i] = y;
    }
    this.lowpass = y;

    let t = this.t;
    while (Math.floor(t) + 1 < len) {
      const i = Math.floor(t);
      const frac = t - i;
      const a = i < 0 ? this.prev : x[i];
      const b = x[i + 1];
      this.push(a + (b - a) * frac);
      t += this.step;
    }
    this.t = t - len;
    this.prev = x[len - 1];
    return true;
  }

  push(sample) {
    const s = sample < -1 ? -1 : sample > 1 ? 1 : sample;
    this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.frameSamples) {
      const buffer = this.frame.buffer;
      this.port.postMessage(buffer, [buffer]); // transferred, not copied
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm-resampler", PcmResampler);
