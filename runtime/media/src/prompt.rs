//! What a leg can play: tones in FreeSWITCH's `tone_stream://` form,
//! `silence_stream://MS`, and WAV files, all rendered as 8 kHz 16-bit
//! samples, 160 per 20 ms frame.
//!
//! A [`Prompt`] is parsed (and a WAV file read and resampled) once, off the
//! media workers; a [`Player`] is the per-leg cursor a worker advances one
//! frame per tick of its media clock, with no allocation.
//!
//! `tone_stream://` grammar (FreeSWITCH's teletone, the parts that shape
//! sound): `;`-separated items, each either a segment
//! `%(ON_MS,OFF_MS,FREQ[,FREQ...])` (frequencies may also be joined with
//! `+`; up to four are mixed) or a setting: `v=DB` volume in dBFS (default
//! -7, at most 0), `L=N` play the whole stream N times (`L=-1`: until
//! stopped). Other settings of teletone (`d=`, `w=`, `>=`, `+=`) are
//! accepted and ignored. Bare `ON,OFF,FREQ` items without `%( )` are read as
//! segments too.

use std::f32::consts::TAU;
use std::path::Path;
use std::sync::Arc;

/// Samples per second of everything a prompt renders.
pub const RATE: u32 = 8000;
/// Samples per 20 ms frame.
pub const FRAME: usize = 160;

/// Most frequencies mixed in one tone segment.
const MAX_FREQS: usize = 4;

/// A prompt that could not be understood or read.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The text is not a `tone_stream://` or `silence_stream://` this
    /// engine understands.
    #[error("bad {kind}: {detail}")]
    Syntax {
        /// `tone_stream` or `silence_stream`.
        kind: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a WAV file this engine plays.
    #[error("{path} is not a playable WAV file: {detail}")]
    Wav {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Tone {
        on: u32,
        off: u32,
        freqs: [f32; MAX_FREQS],
        n: usize,
        amplitude: f32,
    },
    /// Samples of silence; `u32::MAX` for endless.
    Silence(u32),
    Pcm(Arc<[i16]>),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Tone { on, off, .. } => *on as u64 + *off as u64,
            Segment::Silence(n) => *n as u64,
            Segment::Pcm(s) => s.len() as u64,
        }
    }
}

/// Something to play, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    segments: Vec<Segment>,
    /// Times to play the whole list; `None` until stopped.
    loops: Option<u32>,
}

fn syntax(kind: &'static str, detail: impl Into<String>) -> PromptError {
    PromptError::Syntax {
        kind,
        detail: detail.into(),
    }
}

impl Prompt {
    /// Parses `tone_stream://...` or `silence_stream://...`, or reads the
    /// WAV file at `spec` (a path; callers confine it first).
    pub fn load(spec: &str) -> Result<Prompt, PromptError> {
        if let Some(t) = spec.strip_prefix("tone_stream://") {
            Prompt::tone(t)
        } else if let Some(s) = spec.strip_prefix("silence_stream://") {
            Prompt::silence(s)
        } else {
            Prompt::wav_file(Path::new(spec))
        }
    }

    /// Whether `spec` names a generated stream rather than a file.
    pub fn is_stream(spec: &str) -> bool {
        spec.starts_with("tone_stream://") || spec.starts_with("silence_stream://")
    }

    /// `silence_stream://MS[,NOISE]`; `-1` (or 0) plays until stopped.
    pub fn silence(spec: &str) -> Result<Prompt, PromptError> {
        let ms = spec.split(',').next().unwrap_or("").trim();
        let ms: i64 = ms
            .parse()
            .map_err(|_| syntax("silence_stream", format!("{ms:?} is not milliseconds")))?;
        let samples = if ms <= 0 {
            u32::MAX
        } else {
            (ms as u64 * RATE as u64 / 1000).min(u32::MAX as u64 - 1) as u32
        };
        Ok(Prompt {
            segments: vec![Segment::Silence(samples)],
            loops: Some(1),
        })
    }

    /// The part of a `tone_stream://` after the scheme.
    pub fn tone(spec: &str) -> Result<Prompt, PromptError> {
        let mut amplitude = db_to_amplitude(-7.0);
        let mut loops = Some(1);
        let mut segments = Vec::new();
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(v) = item.strip_prefix("v=") {
                let db: f32 = v
                    .trim()
                    .parse()
                    .map_err(|_| syntax("tone_stream", format!("volume {v:?}")))?;
                amplitude = db_to_amplitude(db.min(0.0));
            } else if let Some(l) = item.strip_prefix("L=").or_else(|| item.strip_prefix("l=")) {
                let n: i64 = l
                    .trim()
                    .parse()
                    .map_err(|_| syntax("tone_stream", format!("loop count {l:?}")))?;
                loops = if n < 0 {
                    None
                } else {
                    Some(n.clamp(1, u32::MAX as i64) as u32)
                };
            } else if item.len() > 1 && item.as_bytes()[1] == b'=' {
                // d=, w=, >=, += and friends: timing tweaks, ignored.
            } else {
                let body = item
                    .strip_prefix("%(")
                    .and_then(|b| b.strip_suffix(')'))
                    .unwrap_or(item);
                segments.push(parse_segment(body, amplitude)?);
            }
        }
        if segments.is_empty() {
            return Err(syntax("tone_stream", "no %(on,off,freq) segment"));
        }
        Ok(Prompt { segments, loops })
    }

    /// Reads a WAV file: PCM 16-bit (or 8-bit unsigned), mono or stereo
    /// (mixed down), any rate (resampled to 8 kHz; 8 and 16 kHz are the
    /// usual).
    pub fn wav_file(path: &Path) -> Result<Prompt, PromptError> {
        let bytes = std::fs::read(path).map_err(|source| PromptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let pcm = decode_wav(&bytes).map_err(|detail| PromptError::Wav {
            path: path.display().to_string(),
            detail,
        })?;
        Ok(Prompt::pcm(pcm))
    }

    /// Plays 8 kHz samples once.
    pub fn pcm(samples: Vec<i16>) -> Prompt {
        Prompt {
            segments: vec![Segment::Pcm(samples.into())],
            loops: Some(1),
        }
    }

    /// Total length in samples, `None` if it plays until stopped.
    pub fn samples(&self) -> Option<u64> {
        let once: u64 = self.segments.iter().map(Segment::len).sum();
        if self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Silence(u32::MAX)))
        {
            return None;
        }
        self.loops.map(|n| once * n as u64)
    }
}

fn db_to_amplitude(db: f32) -> f32 {
    32767.0 * 10f32.powf(db / 20.0)
}

fn parse_segment(body: &str, amplitude: f32) -> Result<Segment, PromptError> {
    let mut parts = body.split(',').map(str::trim);
    let ms = |p: Option<&str>, what: &str| -> Result<u32, PromptError> {
        let p = p.unwrap_or("");
        let v: f64 = p
            .parse()
            .map_err(|_| syntax("tone_stream", format!("{what} {p:?} in ({body})")))?;
        if !(0.0..=3_600_000.0).contains(&v) {
            return Err(syntax("tone_stream", format!("{what} {p:?} out of range")));
        }
        Ok((v * RATE as f64 / 1000.0) as u32)
    };
    let on = ms(parts.next(), "on time")?;
    let off = ms(parts.next(), "off time")?;
    let mut freqs = [0f32; MAX_FREQS];
    let mut n = 0;
    for f in parts.flat_map(|p| p.split('+')).map(str::trim) {
        if f.is_empty() {
            continue;
        }
        let hz: f32 = f
            .parse()
            .map_err(|_| syntax("tone_stream", format!("frequency {f:?}")))?;
        if !(0.0..=(RATE as f32 / 2.0)).contains(&hz) {
            return Err(syntax(
                "tone_stream",
                format!("frequency {f} Hz out of range"),
            ));
        }
        if n == MAX_FREQS {
            return Err(syntax("tone_stream", "more than four frequencies"));
        }
        freqs[n] = hz;
        n += 1;
    }
    if on + off == 0 {
        return Err(syntax("tone_stream", format!("empty segment ({body})")));
    }
    Ok(Segment::Tone {
        on,
        off,
        freqs,
        n,
        amplitude: if n > 0 { amplitude / n as f32 } else { 0.0 },
    })
}

/// Decodes a RIFF/WAVE file to 8 kHz mono samples.
pub fn decode_wav(b: &[u8]) -> Result<Vec<i16>, String> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE header".into());
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        let body = &b[at + 8..(at + 8).saturating_add(len).min(b.len())];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err("short fmt chunk".into());
            }
            let u16at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let format = u16at(0);
            let channels = u16at(2);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            let bits = u16at(14);
            // WAVE_FORMAT_EXTENSIBLE carries the real format in its GUID.
            let format = if format == 0xFFFE && body.len() >= 26 {
                u16at(24)
            } else {
                format
            };
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.ok_or("data before fmt")?;
            if format != 1 {
                return Err(format!("format {format} (only PCM is played)"));
            }
            if channels == 0 || channels > 8 {
                return Err(format!("{channels} channels"));
            }
            if !(4000..=192_000).contains(&rate) {
                return Err(format!("sample rate {rate}"));
            }
            let ch = channels as usize;
            let mono: Vec<i16> = match bits {
                16 => body
                    .chunks_exact(2 * ch)
                    .map(|f| {
                        let sum: i32 = f
                            .chunks_exact(2)
                            .map(|s| i16::from_le_bytes([s[0], s[1]]) as i32)
                            .sum();
                        (sum / ch as i32) as i16
                    })
                    .collect(),
                8 => body
                    .chunks_exact(ch)
                    .map(|f| {
                        let sum: i32 = f.iter().map(|&s| (s as i32 - 128) << 8).sum();
                        (sum / ch as i32) as i16
                    })
                    .collect(),
                _ => return Err(format!("{bits}-bit samples")),
            };
            return Ok(resample(&mono, rate));
        }
        at = at + 8 + len + (len & 1);
    }
    Err("no data chunk".into())
}

/// Resamples to 8 kHz: integer ratios average each group of samples (a
/// box filter against aliasing), others interpolate linearly.
pub fn resample(pcm: &[i16], rate: u32) -> Vec<i16> {
    if rate == RATE {
        return pcm.to_vec();
    }
    if rate.is_multiple_of(RATE) {
        let k = (rate / RATE) as usize;
        return pcm
            .chunks(k)
            .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / c.len() as i32) as i16)
            .collect();
    }
    let out_len = (pcm.len() as u64 * RATE as u64 / rate as u64) as usize;
    let step = rate as f64 / RATE as f64;
    (0..out_len)
        .map(|i| {
            let x = i as f64 * step;
            let j = x as usize;
            let f = x - j as f64;
            let a = pcm[j.min(pcm.len() - 1)] as f64;
            let b = pcm[(j + 1).min(pcm.len() - 1)] as f64;
            (a + (b - a) * f) as i16
        })
        .collect()
}

/// Renders a [`Prompt`] frame by frame.
#[derive(Debug)]
pub struct Player {
    prompt: Arc<Prompt>,
    segment: usize,
    /// Samples of the current segment already rendered.
    offset: u64,
    /// Loops left after this one (`None`: endless).
    loops_left: Option<u32>,
    phases: [f32; MAX_FREQS],
}

impl Player {
    /// Starts at the beginning.
    pub fn new(prompt: Arc<Prompt>) -> Player {
        let loops_left = prompt.loops.map(|n| n.saturating_sub(1));
        Player {
            prompt,
            segment: 0,
            offset: 0,
            loops_left,
            phases: [0.0; MAX_FREQS],
        }
    }

    /// Fills `out` with the next samples; returns how many were written (a
    /// short count means the prompt ended; 0 means it had ended already).
    pub fn render(&mut self, out: &mut [i16]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let Some(seg) = self.prompt.segments.get(self.segment) else {
                break;
            };
            let left = seg.len() - self.offset;
            if left == 0 {
                self.segment += 1;
                self.offset = 0;
                self.phases = [0.0; MAX_FREQS];
                if self.segment == self.prompt.segments.len() {
                    match self.loops_left {
                        Some(0) => break,
                        Some(ref mut n) => *n -= 1,
                        None => {}
                    }
                    self.segment = 0;
                }
                continue;
            }
            let n = (left.min((out.len() - done) as u64)) as usize;
            let dst = &mut out[done..done + n];
            match seg {
                Segment::Silence(_) => dst.fill(0),
                Segment::Pcm(s) => {
                    let o = self.offset as usize;
                    dst.copy_from_slice(&s[o..o + n]);
                }
                Segment::Tone {
                    on,
                    freqs,
                    n: nf,
                    amplitude,
                    ..
                } => {
                    for (i, d) in dst.iter_mut().enumerate() {
                        let pos = self.offset + i as u64;
                        if pos >= *on as u64 {
                            *d = 0;
                            continue;
                        }
                        let mut v = 0f32;
                        for (ph, f) in self.phases.iter_mut().zip(&freqs[..*nf]) {
                            v += ph.sin();
                            *ph += TAU * f / RATE as f32;
                            if *ph >= TAU {
                                *ph -= TAU;
                            }
                        }
                        *d = (v * amplitude) as i16;
                    }
                }
            }
            self.offset += n as u64;
            done += n;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero crossings per second: twice the frequency of a pure tone.
    fn frequency(pcm: &[i16]) -> f32 {
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f32 * RATE as f32 / pcm.len() as f32 / 2.0
    }

    fn render_all(p: Prompt, cap: usize) -> Vec<i16> {
        let mut pl = Player::new(Arc::new(p));
        let mut out = Vec::new();
        let mut f = [0i16; FRAME];
        loop {
            let n = pl.render(&mut f);
            out.extend_from_slice(&f[..n]);
            if n < FRAME || out.len() >= cap {
                return out;
            }
        }
    }

    #[test]
    fn tone_segments_have_their_frequency_length_and_volume() {
        let p = Prompt::load("tone_stream://v=-6;%(500,250,440);%(250,0,1000)").unwrap();
        assert_eq!(p.samples(), Some(8000));
        let pcm = render_all(p, 100_000);
        assert_eq!(pcm.len(), 8000);
        let f = frequency(&pcm[..4000]);
        assert!((f - 440.0).abs() < 440.0 * 0.02, "{f}");
        assert!(pcm[4000..6000].iter().all(|&s| s == 0));
        let f = frequency(&pcm[6000..]);
        assert!((f - 1000.0).abs() < 20.0, "{f}");
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        // -6 dBFS is half of full scale.
        assert!((16000..16500).contains(&peak), "{peak}");
    }

    #[test]
    fn loops_and_dual_tones() {
        let p = Prompt::tone("L=3;%(100,100,350+440)").unwrap();
        assert_eq!(p.samples(), Some(3 * 1600));
        assert_eq!(render_all(p, 100_000).len(), 4800);
        let p = Prompt::tone("L=-1;%(100,100,350,440)").unwrap();
        assert_eq!(p.samples(), None);
        assert_eq!(render_all(p, 50_000).len(), 50_080);
        // Bare segments, ignored settings.
        let p = Prompt::tone("d=100;w=2;100,0,425").unwrap();
        assert_eq!(p.samples(), Some(800));
    }

    #[test]
    fn bad_tone_streams_are_refused_with_the_reason() {
        for bad in [
            "",
            "v=loud;%(1,1,440)",
            "%(x,0,440)",
            "%(100,0,9000)",
            "%(0,0,440)",
            "%(1,1,1,2,3,4,5)",
        ] {
            let e = Prompt::tone(bad).unwrap_err().to_string();
            assert!(e.starts_with("bad tone_stream"), "{bad}: {e}");
        }
        assert!(Prompt::load("silence_stream://abc").is_err());
    }

    #[test]
    fn silence_streams() {
        let p = Prompt::load("silence_stream://250").unwrap();
        assert_eq!(p.samples(), Some(2000));
        assert!(render_all(p, 10_000).iter().all(|&s| s == 0));
        assert_eq!(Prompt::load("silence_stream://-1").unwrap().samples(), None);
    }

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
        b.extend_from_slice(&(2 * channels).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"LIST\x04\x00\x00\x00abcd");
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }

    fn sine(rate: u32, hz: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((TAU * hz * i as f32 / rate as f32).sin() * 10000.0) as i16)
            .collect()
    }

    #[test]
    fn wav_files_at_8_and_16_khz_mono_and_stereo() {
        let p = decode_wav(&wav(8000, 1, &sine(8000, 500.0, 8000))).unwrap();
        assert_eq!(p.len(), 8000);
        assert!((frequency(&p) - 500.0).abs() < 10.0);
        let p = decode_wav(&wav(16000, 1, &sine(16000, 700.0, 16000))).unwrap();
        assert_eq!(p.len(), 8000);
        assert!((frequency(&p) - 700.0).abs() < 14.0);
        let st: Vec<i16> = sine(8000, 300.0, 4000)
            .into_iter()
            .flat_map(|s| [s, s])
            .collect();
        let p = decode_wav(&wav(8000, 2, &st)).unwrap();
        assert_eq!(p.len(), 4000);
        let p = decode_wav(&wav(11025, 1, &sine(11025, 400.0, 11025))).unwrap();
        assert!((p.len() as i32 - 8000).abs() <= 1);
        assert!((frequency(&p) - 400.0).abs() < 8.0);
        assert!(decode_wav(b"RIFF....WAVE").is_err());
        assert!(decode_wav(b"not a wav").is_err());
        let mut bad = wav(8000, 1, &[1, 2]);
        bad[20] = 3; // IEEE float
        assert!(decode_wav(&bad).unwrap_err().contains("format 3"));
    }
}
