"""Synthetic expression data made by the project itself: eSpeak NG speech + rule-based lip-sync targets.

Sentences are drawn from small built-in word lists (zh, ja, en, de, fr, es, it, ...), spoken by eSpeak NG voices with
varied rate and pitch; their phoneme events drive ``motion.face.lipsync`` to give 60 fps ARKit targets. Audio is resampled
to 44.1 kHz and augmented (level, noise, leading/trailing silence). Used to train the shipped default mel head
(``scripts/train_default_head.py``) and by the end-to-end tests, which write the clips as recorder takes with a known
audio<->face offset and dropped frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soxr
from tqdm import tqdm

from bert_vits2.audio import TTS_SAMPLE_RATE
from motion import espeak_tts
from motion.face.lipsync import lipsync_events
from motion.face.neural_voices import speak
from motion.livelink.take import Take, save_take

log = logging.getLogger(__name__)

WORDS: dict[str, list[str]] = {
    "en": ("the a to of and in is it you that he was for on are with as I his they be at one have this from or had by "
           "word but what some we can out other were all there when up use your how said an each she which do their "
           "time if will way about many then them write would like so these her long make thing see him two has look "
           "more day could go come did number sound no most people my over know water than call first who may down "
           "side been now find any new work part take get place made live where after back little only round man year "
           "came show every good me give our under name very through just form sentence great think say help low line "
           "differ turn cause much mean before move right boy old too same tell does set three want air well also play "
           "small end put home read hand port large spell add even land here must big high such follow act why ask "
           "men change went light kind off need house picture try us again animal point mother world near build self "
           "earth father head stand own page should country found answer school grow study still learn plant cover "
           "food sun four between state keep eye never last let thought city tree cross farm hard start might story "
           "saw far sea draw left late run while press close night real life few north open seem together next white "
           "children begin got walk example ease paper group always music those both mark often letter until mile "
           "river car feet care second book carry took science eat room friend began idea fish mountain stop once "
           "base hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red "
           "list though feel talk bird soon body dog family direct pose leave song measure door product black short "
           "numeral class wind question happen complete ship area half rock order fire south problem piece told knew "
           "pass since top whole king space heard best hour better true during hundred five remember step early hold "
           "west ground interest reach fast verb sing listen six table travel less morning ten simple several vowel "
           "toward war lay against pattern slow center love person money serve appear road map rain rule govern pull "
           "cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan figure star "
           "box noun field rest correct able pound done beauty drive stood contain front teach week final gave green "
           "oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street inch "
           "multiply nothing course stay wheel full force blue object decide surface deep moon island foot system "
           "busy test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape "
           "equate hot miss brought heat snow tire bring yes distant fill east paint language among").split(),
    "cmn": list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而"
                "方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
                "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气"
                "第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设"
                "及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任"
                "取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清美再采"
                "转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今"
                "集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技"
                "备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼"
                "王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"),
    "ja": ("a i u e o ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho ma mi mu me mo "
           "ya yu yo ra ri ru re ro wa n ga gi gu ge go za ji zu ze zo da de do ba bi bu be bo pa pi pu pe po kya kyu "
           "kyo sha shu sho cha chu cho nya nyu nyo hya hyu hyo mya myu myo rya ryu ryo").split(),
    "de": ("der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er "
           "hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor "
           "zur bis mehr durch man sein wurde sei Haus Wasser Mutter Vater Kind Buch schön gut groß klein").split(),
    "fr": ("le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas vous par sur faire plus "
           "dire me on mon lui nous comme mais pouvoir avec tout y aller voir bien où sans tu ou leur homme si deux "
           "mari moi vouloir te femme venir quand grand celui notre devoir là jour prendre même votre rien petit").split(),
    "es": ("de la que el en y a los se del las un por con no una su para es al lo como más o pero sus le ha me si sin "
           "sobre este ya entre cuando todo esta ser son dos también fue había era muy años hasta desde está mi porque "
           "qué sólo han yo hay vez puede todos así nos ni parte tiene él uno donde bien tiempo mismo ese ahora").split(),
    "it": ("di e il la che in a per un del non sono è una con le si da al lo io mi ma ti come ci questo qui cosa bene "
           "tutto anche lui mio se sei più quando perché ha fatto casa mamma tempo grazie buono sempre niente").split(),
}
# Mandarin needs its own sentence rule (no spaces); Japanese kana strings come from romaji syllables.
_JA_KANA = {
    "a": "あ", "i": "い", "u": "う", "e": "え", "o": "お", "ka": "か", "ki": "き", "ku": "く", "ke": "け", "ko": "こ",
    "sa": "さ", "shi": "し", "su": "す", "se": "せ", "so": "そ", "ta": "た", "chi": "ち", "tsu": "つ", "te": "て",
    "to": "と", "na": "な", "ni": "に", "nu": "ぬ", "ne": "ね", "no": "の", "ha": "は", "hi": "ひ", "fu": "ふ",
    "he": "へ", "ho": "ほ", "ma": "ま", "mi": "み", "mu": "む", "me": "め", "mo": "も", "ya": "や", "yu": "ゆ",
    "yo": "よ", "ra": "ら", "ri": "り", "ru": "る", "re": "れ", "ro": "ろ", "wa": "わ", "n": "ん", "ga": "が",
    "gi": "ぎ", "gu": "ぐ", "ge": "げ", "go": "ご", "za": "ざ", "ji": "じ", "zu": "ず", "ze": "ぜ", "zo": "ぞ",
    "da": "だ", "de": "で", "do": "ど", "ba": "ば", "bi": "び", "bu": "ぶ", "be": "べ", "bo": "ぼ", "pa": "ぱ",
    "pi": "ぴ", "pu": "ぷ", "pe": "ぺ", "po": "ぽ", "kya": "きゃ", "kyu": "きゅ", "kyo": "きょ", "sha": "しゃ",
    "shu": "しゅ", "sho": "しょ", "cha": "ちゃ", "chu": "ちゅ", "cho": "ちょ", "nya": "にゃ", "nyu": "にゅ",
    "nyo": "にょ", "hya": "ひゃ", "hyu": "ひゅ", "hyo": "ひょ", "mya": "みゃ", "myu": "みゅ", "myo": "みょ",
    "rya": "りゃ", "ryu": "りゅ", "ryo": "りょ",
}

# Voices used for the default head; the evaluation uses other voices/variants (see HELD_OUT_VOICES).
TRAIN_VOICES: tuple[str, ...] = ("en", "en-us", "en+f3", "en-us+m3", "cmn", "cmn+f2", "ja", "ja+f4", "de", "fr", "es", "it")
HELD_OUT_VOICES: tuple[str, ...] = ("en-gb-x-rp+f4", "en-us+m7", "cmn+m5", "ja+m2", "pt", "nl")
# Neural voices (motion.face.neural_voices), named "<engine>/<speaker>@<language>". Besides the four training speakers,
# every pair of them blended ("a+b") gives six more voices. Kokoro's fifth speaker, jf_tebukuro, and Piper's joe (a
# different engine, vocoder and speaker) are never used in training, not even for validation: they are the unseen
# neural voices of the tests and benchmarks.
_KOKORO_TRAIN = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jm_kumo")
NEURAL_TRAIN_VOICES: tuple[str, ...] = tuple(
    f"kokoro/{s}@{lang}"
    for s in (*_KOKORO_TRAIN, *(f"{a}+{b}" for i, a in enumerate(_KOKORO_TRAIN) for b in _KOKORO_TRAIN[i + 1:]))
    for lang in ("ja", "en"))
NEURAL_HELD_OUT_VOICES: tuple[str, ...] = ("kokoro/jf_tebukuro@en", "kokoro/jf_tebukuro@ja")
OTHER_ENGINE_VOICES: tuple[str, ...] = ("piper/en_US-joe-medium@en",)


def _lang_of(voice: str) -> str:
    if "@" in voice:
        return voice.rsplit("@", 1)[1]
    base = voice.split("+")[0].split("-")[0].lower()
    if base in ("zh", "cmn"):
        return "cmn"
    return base if base in WORDS else "en"


def random_sentence(voice: str, rng: np.random.Generator, min_words: int = 3, max_words: int = 12) -> str:
    """A random word sequence in the voice's language (phonetic variety, not meaning), with commas and a full stop."""
    lang = _lang_of(voice)
    n = int(rng.integers(min_words, max_words + 1))
    words = WORDS[lang]
    if lang == "cmn":
        chars = [words[int(i)] for i in rng.integers(0, len(words), n * 2)]
        parts = ["".join(chars[i:i + int(rng.integers(2, 6))]) for i in range(0, len(chars), 4)]
        return "，".join(p for p in parts if p) + "。"
    if lang == "ja":
        sy = list(_JA_KANA)
        out = []
        for _ in range(n):
            out.append("".join(_JA_KANA[sy[int(i)]] for i in rng.integers(0, len(sy), int(rng.integers(2, 5)))))
        return "、".join("".join(out[i:i + 3]) for i in range(0, len(out), 3)) + "。"
    chosen = [words[int(i)] for i in rng.integers(0, len(words), n)]
    text = ""
    for i, w in enumerate(chosen):
        text += (", " if i and rng.random() < 0.12 else " ") + w
    return text.strip().capitalize() + "."


@dataclass
class Utterance:
    text: str
    voice: str
    audio: np.ndarray  # mono float32 at 44.1 kHz
    events: list[tuple[str, float, float]]  # phoneme spans on the audio's time axis
    targets: np.ndarray  # [M, 61] at 60 fps covering the audio


def augment(audio: np.ndarray, rng: np.random.Generator, sr: int = TTS_SAMPLE_RATE,
            eq: bool = False) -> tuple[np.ndarray, float]:
    """Level (-26..0 dB re. peak 0.9), noise (none or 12-45 dB SNR, white or pink-ish) and 0-0.6 s leading silence;
    with ``eq`` first a random tone colour on 70 % of clips (a one-pole low-pass at 1.5-8 kHz mixed in or out: about
    -8..+6 dB of treble), as different voices, vocoders and microphones have. Returns (audio, seconds added in front)."""
    if eq and rng.random() < 0.7:
        from scipy.signal import lfilter  # scipy.signal: ~2 s import, only for EQ augmentation

        pole = float(np.exp(-2 * np.pi * rng.uniform(1500, 8000) / sr))
        low = lfilter([1 - pole], [1, -pole], audio).astype(np.float32)
        mix = float(rng.uniform(-0.6, 0.8))  # > 0 duller, < 0 brighter
        audio = (1 - mix) * audio + mix * low
    a = audio / max(1e-6, float(np.abs(audio).max())) * 0.9 * 10 ** (rng.uniform(-26, 0) / 20)
    lead = float(rng.uniform(0.0, 0.6))
    tail = float(rng.uniform(0.0, 0.6))
    a = np.concatenate([np.zeros(int(lead * sr), np.float32), a, np.zeros(int(tail * sr), np.float32)])
    if rng.random() < 0.7:
        rms = float(np.sqrt(np.mean(a * a)) + 1e-9)
        snr = rng.uniform(12, 45)
        noise = rng.standard_normal(len(a)).astype(np.float32)
        if rng.random() < 0.5:  # pink-ish: integrate white noise once, remove DC drift
            noise = np.cumsum(noise)
            noise = noise - np.convolve(noise, np.ones(257) / 257, mode="same")
            noise /= max(1e-6, float(noise.std()))
        a = a + noise * rms * 10 ** (-snr / 20)
    return np.clip(a, -1.0, 1.0).astype(np.float32), lead


def perturb_speaker_and_channel(audio: np.ndarray, rng: np.random.Generator,
                                sr: int = TTS_SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Changes that other voices, rooms and transmission bring, each on a share of clips: a speed change of
    0.88-1.12 (pitch, formants and tempo move together, as between speakers of different vocal tract length; 60 %),
    a low-pass at 3.4-8 kHz (telephone, low-rate codecs; 30 %), a high-pass at 80-300 Hz (small microphones; 30 %),
    a room (exponentially decaying noise, RT60 0.15-0.6 s, 20-60 % wet; 30 %) and 8-bit mu-law at 8 or 16 kHz (20 %).
    Returns (audio, time scale): phone times of the input are multiplied by the scale."""
    from scipy.signal import butter, fftconvolve, sosfilt  # scipy.signal: ~2 s import, only for this augmentation

    scale = 1.0
    if rng.random() < 0.6:
        factor = float(rng.uniform(0.88, 1.12))  # > 1: faster and higher
        audio = soxr.resample(audio, sr * factor, sr, quality="HQ").astype(np.float32)
        scale = 1.0 / factor
    if rng.random() < 0.3:
        audio = sosfilt(butter(6, float(rng.uniform(3400, 8000)), "lowpass", fs=sr, output="sos"), audio)
    if rng.random() < 0.3:
        audio = sosfilt(butter(2, float(rng.uniform(80, 300)), "highpass", fs=sr, output="sos"), audio)
    if rng.random() < 0.3:
        rt60 = float(rng.uniform(0.15, 0.6))
        t = np.arange(int(rt60 * sr)) / sr
        rir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        rir /= np.sqrt(np.sum(rir ** 2))
        wet = float(rng.uniform(0.2, 0.6))
        audio = (1 - wet) * audio + wet * fftconvolve(audio, rir)[:len(audio)]
    if rng.random() < 0.2:
        low = int(rng.choice([8000, 16000]))
        x = soxr.resample(np.asarray(audio, np.float32), sr, low)
        x = np.clip(x / max(1e-6, float(np.abs(x).max())), -1, 1)
        mu = np.round(np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255) * 127) / 127  # 8-bit mu-law code
        x = np.sign(mu) * np.expm1(np.abs(mu) * np.log1p(255)) / 255
        n = len(audio)
        audio = soxr.resample(x.astype(np.float32), low, sr)[:n]
        audio = np.pad(audio, (0, n - len(audio)))  # the same length: the phone times stay valid
    return np.asarray(audio, np.float32), scale


def make_utterance(
    text: str, voice: str = "en", rate: float = 175, pitch: int = 50, rng: np.random.Generator | None = None,
    fps: float = 60.0, eq: bool = False, channel: bool = False,
) -> Utterance:
    """Speak ``text`` and make its rule-based targets (with augmentation when ``rng`` is given).

    ``voice``: an eSpeak NG voice (``rate`` in words per minute, ``pitch`` 0-100) or a neural voice
    ``<engine>/<speaker>@<language>`` (``rate`` is then a speed factor around 1, ``pitch`` is unused)."""
    if "@" in voice:
        name, lang = voice.rsplit("@", 1)
        spoken = speak(name, text, "ja" if lang == "ja" else "en", rate=float(rate))
        audio, sr, events = spoken.audio, spoken.sample_rate, spoken.events
    else:
        audio, sr, events = espeak_tts.synthesize(text, voice=voice, rate=rate, pitch=pitch)
    audio = soxr.resample(audio, sr, TTS_SAMPLE_RATE, quality="HQ").astype(np.float32)
    lead, scale = 0.0, 1.0
    if rng is not None and channel:
        audio, scale = perturb_speaker_and_channel(audio, rng)
    if rng is not None:
        audio, lead = augment(audio, rng, eq=eq)
    events = [(p, t0 * scale + lead, t1 * scale + lead) for p, t0, t1 in events]
    num = max(1, int(round(len(audio) / TTS_SAMPLE_RATE * fps)))
    targets = lipsync_events(events, fps=fps, num_frames=num, lang="ipa")
    return Utterance(text, voice, audio, events, targets)


def random_utterance(rng: np.random.Generator, voices: Sequence[str] = TRAIN_VOICES, augmented: bool = True,
                     eq: bool = False, channel: bool = False) -> Utterance:
    voice = voices[int(rng.integers(0, len(voices)))]
    text = random_sentence(voice, rng)
    rate: float = float(rng.uniform(0.8, 1.25)) if "@" in voice else int(rng.integers(120, 230))
    return make_utterance(text, voice, rate=rate, pitch=int(rng.integers(25, 80)), rng=rng if augmented else None,
                          eq=eq, channel=channel)


def evaluation_utterances(voices: Sequence[str], count: int = 12, seed: int = 17) -> list[Utterance]:
    """The held-out clips the face measures use (tests/test_alive_face.py, benchmarks/bench_face_neural_voice.py):
    three random sentences each, voices taken in turn, no augmentation; eSpeak NG at 130-210 wpm and pitch 30-70,
    neural voices at 0.8-1.2x speed. Each eSpeak NG clip is spoken by a freshly loaded engine
    (``espeak_tts.reset_engine``), so a set is the same whatever the process spoke before."""
    rng = np.random.default_rng(seed)
    clips = []
    for k in range(count):
        voice = voices[k % len(voices)]
        text = " ".join(random_sentence(voice, rng) for _ in range(3))
        if "@" in voice:
            clips.append(make_utterance(text, voice, rate=float(rng.uniform(0.8, 1.2))))
        else:
            espeak_tts.reset_engine()
            clips.append(make_utterance(text, voice, rate=int(rng.integers(130, 210)), pitch=int(rng.integers(30, 70))))
    return clips


def write_take(
    out_dir: str | Path, name: str, audio: np.ndarray, targets: np.ndarray, *, offset_s: float = 0.08,
    drop: int = 3, jitter_s: float = 0.004, rng: np.random.Generator | None = None, fps: float = 60.0,
    start_frame: int = 216000,
) -> Path:
    """Write one clip as a recorder take (``motion.livelink.take`` format) whose face lags the audio by ``offset_s``:
    frame i shows the targets of time ``(i + 0.5) / fps`` but arrives ``offset_s`` (+ up to ``jitter_s``) later;
    ``drop`` random frames are missing (gaps in the frame numbers)."""
    rng = rng or np.random.default_rng(0)
    n = targets.shape[0]
    keep = np.ones(n, dtype=bool)
    if drop > 0 and n > 10:
        keep[rng.choice(np.arange(2, n - 2), size=min(drop, n - 4), replace=False)] = False
    idx = np.nonzero(keep)[0]
    arrival = (idx + 0.5) / fps + offset_s + rng.uniform(0.0, jitter_s, len(idx))
    take = Take(
        frames=targets[idx].astype(np.float32), fps=fps, frame_times=arrival, frame_numbers=start_frame + idx,
        sub_frames=np.zeros(len(idx), np.float32), audio=audio, sample_rate=TTS_SAMPLE_RATE,
        meta={"source": "motion.face.synth_data", "subject": "synthetic"},
    )
    return save_take(take, out_dir, stem=name)


def make_clips(
    count: int, seed: int = 0, voices: Sequence[str] = TRAIN_VOICES, n_mels: int = 80, augmented: bool = True,
    progress: bool = False, eq: bool = False, channel: bool = False,
):
    """``count`` in-memory training clips (``train_visemes.Clip``: log-mel + 60 fps targets, all frames valid)."""
    from motion.face.features import log_mel  # features imports torch (~3 s): making takes needs none
    from motion.face.train import Clip  # train imports torch (~3 s)

    rng = np.random.default_rng(seed)
    clips = []
    rng_iter = range(count)
    if progress:
        rng_iter = tqdm(rng_iter, desc="synthesising")
    for i in rng_iter:
        u = random_utterance(rng, voices, augmented, eq=eq, channel=channel)
        clips.append(Clip(f"{u.voice}-{i}", log_mel(u.audio, n_mels), u.targets, np.ones(len(u.targets), bool)))
    return clips


__all__ = [
    "HELD_OUT_VOICES", "NEURAL_HELD_OUT_VOICES", "NEURAL_TRAIN_VOICES", "OTHER_ENGINE_VOICES", "TRAIN_VOICES", "Utterance", "WORDS", "augment", "evaluation_utterances", "make_clips", "make_utterance", "perturb_speaker_and_channel",
    "random_sentence", "random_utterance", "write_take",
]
