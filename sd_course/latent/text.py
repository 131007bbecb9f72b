"""The text side of the mini Stable Diffusion: captions from labels, a byte-level BPE learnt from them, and the
checks that say which words of a prompt the model never saw.

    python -c "from sd_course.latent.text import caption; print(caption(7, 'a handwritten digit {word}'))"

The tokenizer is a standard ``CLIPTokenizer`` (vocab.json + merges.txt), so plain diffusers loads it; only its
vocabulary is learnt here, from the captions, instead of from CLIP's 400 million.

Q: Why did one word the model never saw turn its image to noise, and what fixed it?
A: The vocabulary was learnt from the 29 words of the captions, so a word outside them is cut into single bytes, and
   the embeddings of those bytes were never trained (no caption held them): they are random vectors. The text encoder's
   causal self-attention mixes them into every later token, the padding included, and the U-Net's cross-attention reads
   all of them: it is conditioned on vectors it never saw. The first shipped model (now
   pipelines/mini-sd-mnist-epoch10) read its training phrasings right
   [99.5%](benchmarks/results/first_mini_sd_epoch10_prompt_robustness.json#groups.training.prompt_accuracy*100) of the
   time, but its worst phrasing with unseen words only
   [7%](benchmarks/results/first_mini_sd_epoch10_prompt_robustness.json#groups.heldout_unseen_words.worst_prompt_accuracy*100)
   (FID [20.2x](benchmarks/results/first_mini_sd_epoch10_prompt_robustness.json#groups.heldout_unseen_words.worst_fid_over_floor)
   its floor: noise). Fixed by training on with filler: in half the captions, 1 to 12 random words (filler_caption
   below: random letters, pieces of caption words, punctuation) around the digit's, and as many dropped captions made
   filler only, in a context of 77 tokens instead of 16: the byte embeddings get trained, and the model learns that
   the digit's word is what matters wherever it stands, and that filler alone means "any digit". The shipped model
   now reads the phrasings with unseen words right
   [99.6%](pipelines/mini-sd-mnist/prompt_robustness.json#groups.heldout_unseen_words.prompt_accuracy*100) of the
   time (worst phrasing
   [98%](pipelines/mini-sd-mnist/prompt_robustness.json#groups.heldout_unseen_words.worst_prompt_accuracy*100)).
   It has a price: at a fixed budget the noisier captions and the longer context slow learning (the quick recipe's first version,
   600 steps: [92%](benchmarks/results/first_vae_prompt_robustness_quick_ablation.json#variants.variant=16_tokens.training.prompt_accuracy*100)
   of the training phrasings read right with 16 tokens and no filler,
   [43%](benchmarks/results/first_vae_prompt_robustness_quick_ablation.json#variants.variant=77_tokens_fillers.training.prompt_accuracy*100)
   with both). Real Stable Diffusion does not meet the problem at this scale: its CLIP text encoder was trained on 400
   million captions, so nearly every word a user types was seen in thousands of contexts, and its 49,408-token
   vocabulary splits the rest into trained sub-words. A text encoder is only as robust as the variety of the text it
   was trained on; the filler words are that variety in miniature.
Cmd: python benchmarks/prompt_robustness.py --model pipelines/mini-sd-mnist --reference ylecun/mnist:test
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional

import torch
from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# Captions made from a label: words and numerals, several phrasings. One is drawn per image and per step.
TRAIN_TEMPLATES = (
    "a handwritten digit {word}",
    "{num}",
    "{word}",
    "the number {word}",
    "the number {num}",
    "a handwritten {word}",
    "digit {num}",
    "a picture of the digit {word}",
    "handwritten {num}",
    "an image of the number {num}",
)


# Phrasings never seen in training, made only of words that were: does the model generalise to new phrasing?
HELDOUT_TEMPLATES = (
    "a {word}",
    "the handwritten number {num}",
    "a picture of a {word}",
    "an image of the digit {word}",
)


# Words and marks that surround the digit's words in a noisy caption (filler_caption): letters drawn with their
# frequency in English text (so the pairs the BPE merged, "th", "er", "in", turn up as in real words), pieces of the
# caption words ("numbers", "handwriting" split into merged sub-words the captions never use alone), punctuation.
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5,
                  1.0, 0.8, 0.15, 0.15, 0.1, 0.07)
PUNCTUATION = (",", ".", "!", "?", ":", "-", "'", '"', "(", ")", "&", "*")

WORDS_FILE = "caption_words.json"  # the words the tokenizer and text encoder were trained on (beside vocab.json)


def caption(label: int, template: str) -> str:
    return template.format(word=DIGIT_WORDS[label], num=label)


def filler_word(generator: torch.Generator, stems: tuple[str, ...]) -> str:
    """One word that names no digit: random letters (half the time), a caption word cut and extended with random
    letters (a third), or a punctuation mark."""
    kind = torch.rand((), generator=generator).item()
    if kind < 0.5 or not stems:
        return _letters(generator, int(torch.randint(1, 11, (), generator=generator)))
    if kind < 0.85:
        stem = stems[int(torch.randint(len(stems), (), generator=generator))]
        cut = int(torch.randint(1, len(stem) + 1, (), generator=generator))
        extra = _letters(generator, int(torch.randint(0, 5, (), generator=generator)))
        return stem[:cut] + extra if torch.rand((), generator=generator) < 0.7 else extra + stem[-cut:]
    return PUNCTUATION[int(torch.randint(len(PUNCTUATION), (), generator=generator))]


def _letters(generator: torch.Generator, n: int) -> str:
    picks = torch.multinomial(torch.tensor(LETTER_WEIGHTS), n, replacement=True, generator=generator) if n else []
    return "".join(LETTERS[i] for i in picks)


def names_a_digit(word: str) -> bool:
    return word in DIGIT_WORDS or any(ch.isdigit() for ch in word)


def filler_caption(text: str, generator: torch.Generator, stems: tuple[str, ...], max_words: int = 12,
                   fits=None) -> str:
    """``text`` with 1 to ``max_words`` filler words (:func:`filler_word`) put between, before or after its words,
    none of them naming a digit: "the number seven" -> "qeo the numberst seven , hae". A word is put in only where
    ``fits(new_text)`` (e.g. the caption still fits the tokenizer's length: the digit's word is never cut off).

    Why: a word the captions never had is split by the BPE into bytes and sub-words whose embeddings training never
    touched; they feed the U-Net's cross-attention like any token, so one of them in a prompt pulls the image to
    noise. Trained on captions full of such pieces around the digit's words, at every position of the context, the
    text encoder learns to carry the digit's word through whatever surrounds it, as a real caption's words around
    its subject."""
    words = text.split()
    for _ in range(int(torch.randint(1, max_words + 1, (), generator=generator))):
        word = filler_word(generator, stems)
        while names_a_digit(word):
            word = filler_word(generator, stems)
        candidate = list(words)
        candidate.insert(int(torch.randint(len(words) + 1, (), generator=generator)), word)
        if fits is None or fits(" ".join(candidate)):
            words = candidate
    return " ".join(words)


def caption_stems(texts: list[str]) -> tuple[str, ...]:
    """The words of the captions that name no digit ("a", "handwritten", "number", ...): what fillers are cut from."""
    return tuple(sorted({w for text in texts for w in text.lower().split() if not names_a_digit(w)}))


def digit_prompts(templates=TRAIN_TEMPLATES) -> list[tuple[int, str]]:
    """Every (digit, caption) pair of some templates."""
    return [(d, caption(d, t)) for t in templates for d in range(10)]


def learn_bpe(words: dict[str, int]) -> list[tuple[str, str]]:
    """Byte-pair encoding (Sennrich et al. 2016), learnt from word counts: start from single characters (the last
    one marked ``</w>``, end of word, as CLIP does), then repeatedly merge the most frequent adjacent pair into one
    symbol, until every word is a single symbol. Returns the merges in order (the ``merges.txt`` of the tokenizer).

    Ties are broken by the pair itself, so the result depends on the captions only (🤗 tokenizers' BpeTrainer breaks
    them in hash order, which changes from process to process: a resumed run would get other token ids)."""
    splits = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
    merges = []
    while True:
        pairs = Counter()
        for w, symbols in splits.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += words[w]
        if not pairs:
            return merges
        best = max(pairs, key=lambda pair: (pairs[pair], pair))  # the most frequent pair (then the largest)
        merges.append(best)
        for w, symbols in splits.items():
            merged, i = [], 0
            while i < len(symbols):
                if symbols[i:i + 2] == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            splits[w] = tuple(merged)


def train_tokenizer(texts: list[str], max_length: int = 77):
    """A ``CLIPTokenizer`` (byte-level BPE, as CLIP's) whose merges are learnt from ``texts`` by :func:`learn_bpe`.

    Why not CLIP's own 49,408-token vocabulary? No PyPI package ships it (it is downloaded from the Hub), and a
    text encoder trained from scratch on ~30 distinct words would leave 99.9% of its embedding table untrained.
    Learning BPE on our captions gives one token per caption word and falls back to single bytes for anything else
    (an unseen word still tokenizes; :func:`check_prompt` warns that the model never saw it).
    """
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    reference = CLIPTokenizer(vocab={bos: 0, eos: 1}, merges=[])  # CLIP's normaliser and word splitter
    counts = Counter(w for text in texts for w in _words(reference, text))  # words as byte-level symbols
    merges = learn_bpe(dict(counts))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 bytes, as printable characters
    tokens = [bos, eos] + alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}  # ids in that order, no duplicates
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    tokenizer.caption_words = sorted({w for text in texts for w in _words(tokenizer, text)})
    return tokenizer


def _words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` as the tokenizer splits them (lower-cased, punctuation apart)."""
    backend = tokenizer.backend_tokenizer
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]


def save_tokenizer(tokenizer, folder: str | Path) -> None:
    """``save_pretrained`` + vocab.json and merges.txt (the files older ``CLIPTokenizer`` versions read) + the words."""
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    (folder / WORDS_FILE).write_text(json.dumps(getattr(tokenizer, "caption_words", [])))


def known_words(tokenizer) -> Optional[set]:
    """The words the model was trained on (``None`` if unknown, e.g. a pipeline not made here)."""
    words = getattr(tokenizer, "caption_words", None)
    if words is None and getattr(tokenizer, "name_or_path", None):
        path = Path(tokenizer.name_or_path) / WORDS_FILE
        if path.is_file():
            words = json.loads(path.read_text())
    return set(words) if words is not None else None


def check_prompt(tokenizer, prompt: str, what: str = "prompt") -> list[str]:
    """Warn about what the model cannot read: words it never saw (byte fallback) and prompts cut at the token limit.

    Returns the warnings (also issued with ``warnings.warn``)."""
    messages = []
    known = known_words(tokenizer)
    if known is not None:
        unseen = [w for w in _words(tokenizer, prompt) if w not in known and not w.isdigit()]
        if unseen:
            messages.append(f"the {what} {prompt!r} has words the model never saw in training: {unseen}; they are "
                            "read as single letters, which a model trained with filler words (--filler_captions) "
                            f"ignores (it knows: {', '.join(sorted(known))})")
    ids = tokenizer(prompt, truncation=False).input_ids
    if len(ids) > tokenizer.model_max_length:
        kept = tokenizer.decode(ids[1:tokenizer.model_max_length - 1])
        messages.append(f"the {what} is {len(ids)} tokens, longer than the text encoder's {tokenizer.model_max_length}: "
                        f"only {kept!r} is read")
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return messages


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids padded to ``model_max_length`` exactly as ``StableDiffusionPipeline.encode_prompt`` pads them."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids
