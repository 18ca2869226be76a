"""The repetition guard a slot owns: what it watches in the text so far, and what it does.

Watched, over the whole text (not only the window the model sees):
  copy       the longest suffix that occurred before (a suffix automaton, O(1) per token)
  sentence   a sentence written before
  ngram      the 8-gram repetition rate of the last `ngram_window` characters
  collapse   one hanzi's share of the last 200 characters halfway from the human p99 to the 20%
             no human window reaches (`degeneration`)
  fixation   the share of the last 1,000 characters' sentences holding one content character
             above the human p99 (the notes' 句句是"异火")

Countermeasures, applied to the logits before each token is sampled:
  the sign-aware repetition penalty over the last `penalty_window` tokens; OpenAI's presence
  and frequency penalties over the text generated so far; DRY (stronger for a while after the
  detector fired); a focus penalty on the characters the text collapsed or fixated on, fading
  over `focus_tokens` (for a fixation: on every character of the word, a step higher each time a
  sentence names it again while the window is still above the band); a temperature raised after a
  firing and recovering over the same stretch; and, in `rollback` mode, rolling back to before the
  trouble with the token that began it banned (for a fixation: only a sentence that names the word).
After `max_failures` rollbacks without progress the sample stops (`stopped: repetition`).

The engine only schedules: it asks the guard to adjust a row of logits, tells it each token,
and cuts its own tokens and cache when the guard asks for a rollback.
"""
from __future__ import annotations

from collections import Counter, deque

import torch

from .decoding import TokenTable, apply_repetition_penalty
from .degeneration import COLLAPSE_LIMIT, LONG, SHORT, Calibration, collapse, collapse_alarm, fixation, is_hanzi
from .repetition import RepetitionEvents, SuffixAutomaton, ngram_repetition
from .sampling import SamplingConfig

CHECK_EVERY = 8            # tokens between two collapse checks
CROWD_LIMIT = 0.25         # a non-hanzi (，…) above this share of the last 200 characters is crowding
FIXATION_STEPS = 4         # the fixation penalty grows to at most this many focus_penalty steps


class Guard:
    def __init__(self, cfg: SamplingConfig, table: TokenTable, prompt: list[int], sentence_end_ids: set[int],
                 calibration: Calibration | None, vocab_size: int):
        self.cfg, self.rc, self.table = cfg, cfg.repetition, table
        self.prompt, self.sentence_end_ids = prompt, sentence_end_ids
        self.sam = SuffixAutomaton(prompt)
        self.sentences: dict[str, int] = {}   # sentence -> token index where it ended
        self.sentence_start = 0               # token index where the current sentence began
        self.bans: dict[int, set[int]] = {}   # token index -> ids not to sample there
        self.boost_until = 0                  # stronger DRY until this token index
        self.fail_streak = 0                  # rollbacks without real progress since the first of them
        self.fail_mark = 0                    # token count the streak must pass to be forgiven
        self.events = RepetitionEvents()
        self.rollbacks_at: list[int] = []     # character offsets where text was rewritten
        self.gave_up = False
        # focus: token id -> (penalty, token index where it started); fades out over focus_tokens
        self.focus: dict[int, tuple[float, int]] = {}
        self.heat_from: int | None = None     # token index of the last firing (for the recovering temperature)
        self.fixation_level = 0.0             # the focus penalty on the word the text fixated on
        self.fixating = False                 # ... and whether it still is (above the p95)
        self.counts = torch.zeros(vocab_size) if cfg.presence_penalty or cfg.frequency_penalty else None
        self.stop = calibration.stop_set if calibration else frozenset()
        # density: the human p99 share (the penalty starts there); collapse: halfway from it to the
        # limit no human window passes (the detector fires there, before a reader would call it collapse)
        self.density_hi, self.collapse_hi, self.fixation_hi = COLLAPSE_LIMIT / 2, 0.75 * COLLAPSE_LIMIT, None
        self.fixation_lo = None
        if calibration is not None:
            if calibration.band("collapse"):
                self.density_hi = min(COLLAPSE_LIMIT, calibration.band("collapse")[1])
                self.collapse_hi = collapse_alarm(self.density_hi)
            if calibration.band("fixation"):
                self.fixation_hi = calibration.band("fixation")[1]
                # once a text fixated it is watched from the p95 (see _sentence_end)
                self.fixation_lo = min(calibration.percentiles["fixation"].get("p95", self.fixation_hi),
                                       self.fixation_hi)
        self._char_tokens: dict[str, list[int]] = {}
        # the last SHORT characters written, counted: what the density penalty reads
        self.recent: deque[str] = deque()
        self.recent_counts: Counter = Counter()
        self.recent_hanzi = 0

    # -- before a token: the penalties

    def temperature(self, n_tokens: int) -> float:
        t = self.cfg.temperature
        if self.rc.recover_temperature and self.heat_from is not None:
            left = 1 - (n_tokens - self.heat_from) / self.rc.focus_tokens
            if left > 0:
                t += self.rc.recover_temperature * left
        return t

    def adjust(self, logits: torch.Tensor, tokens: list[int]) -> None:
        """Every penalty, in place, on one row of logits for the token after `tokens`."""
        cfg, rc, n = self.cfg, self.rc, len(tokens)
        if cfg.repetition_penalty != 1.0:
            apply_repetition_penalty(logits[None], [tokens[-cfg.penalty_window:]], cfg.repetition_penalty)
        if self.counts is not None:   # OpenAI: mu[j] - c[j] * frequency_penalty - (c[j] > 0) * presence_penalty
            logits -= self.counts * cfg.frequency_penalty + (self.counts > 0).float() * cfg.presence_penalty
        if rc.mode != "off":
            mult = rc.dry_multiplier
            if n < self.boost_until:  # the detector fired recently: push harder
                mult = rc.boost * max(rc.dry_multiplier, 0.5)
            pen = self.sam.dry_penalties(rc.dry_allowed, rc.dry_base, mult) if mult > 0 else None
            if pen:
                logits[torch.tensor(list(pen.keys()))] -= torch.tensor(list(pen.values()), dtype=logits.dtype)
            if self.focus:
                self._apply_focus(logits, n)
            if rc.density_penalty:
                self._apply_density(logits)
        ban = self.bans.get(n)
        if ban:
            logits[torch.tensor(sorted(ban))] = float("-inf")

    def _apply_focus(self, logits: torch.Tensor, n: int) -> None:
        for t, (pen, since) in list(self.focus.items()):
            left = 1 - (n - since) / self.rc.focus_tokens
            if left <= 0 or n < since:
                del self.focus[t]
            else:
                logits[t] -= pen * left

    def _apply_density(self, logits: torch.Tensor) -> None:
        """Before collapse sets in: a character already crowding the last 200 characters beyond
        the human p99 share (a hanzi among the hanzi; punctuation beyond CROWD_LIMIT of all) is
        penalized by density_penalty per occurrence too many."""
        if len(self.recent) < SHORT // 2:
            return
        hanzi_cap = self.density_hi * max(self.recent_hanzi, len(self.recent) / 2)
        other_cap = CROWD_LIMIT * len(self.recent)
        for c, k in self.recent_counts.most_common(3):
            over = k - (hanzi_cap if is_hanzi(c) else other_cap)
            if over <= 0:
                continue   # (a comma under its cap may stand before a hanzi over its own)
            logits[self._tokens_of(c)] -= self.rc.density_penalty * over

    def _tokens_of(self, char: str) -> list[int]:
        ids = self._char_tokens.get(char)
        if ids is None:
            ids = self._char_tokens[char] = [i for i, p in enumerate(self.table.pieces) if char in p]
        return ids

    def _remember(self, piece: str) -> None:
        for c in piece:
            if c.isspace():
                continue
            self.recent.append(c)
            self.recent_counts[c] += 1
            self.recent_hanzi += is_hanzi(c)
            if len(self.recent) > SHORT:
                old = self.recent.popleft()
                self.recent_counts[old] -= 1
                self.recent_hanzi -= is_hanzi(old)

    # -- after a token: the detectors

    def observe(self, tokens: list[int], chars: int, unstreamed: int) -> int:
        """`tokens` just grew by one. Returns how many tokens to roll back (0: none); at most
        `unstreamed` (streamed text is never unsaid). Sets `gave_up` when it stops trying."""
        rc, t = self.rc, tokens[-1]
        if self.counts is not None:
            self.counts[t] += 1
        self._remember(self.table.pieces[t])
        repeat = self.sam.extend(t)
        if rc.mode == "off":
            return 0
        fired = back = None
        if repeat >= rc.max_copy:
            fired, back = "copy", repeat
        elif t in self.sentence_end_ids:
            fired, back = self._sentence_end(tokens)
        if fired is None and len(tokens) % 50 == 0 and chars >= rc.ngram_window:
            window = self.table.text(tokens[-rc.ngram_window:])[-rc.ngram_window:]
            if ngram_repetition(window, 8) > rc.ngram_threshold:
                self._fired("ngram", len(tokens))
        if fired is None and rc.lexical and len(tokens) % CHECK_EVERY == 0 and chars >= SHORT:
            fired, back = self._collapse(tokens)
        if self.fail_streak and len(tokens) > self.fail_mark:
            self.fail_streak = 0  # it got well past the trouble: forgive
        if fired is None:
            return 0
        self._fired(fired, len(tokens))
        if rc.mode != "rollback":
            return 0
        if fired in ("copy", "sentence") and back > unstreamed:
            return 0
        back = min(back, unstreamed)
        if back <= 0:
            return 0
        if self.fail_streak >= rc.max_failures:
            if fired in ("collapse", "fixation"):  # the penalties go on working; the text goes on
                return 0
            self.gave_up = True
            self.events.stopped = True
            return 0
        if self.fail_streak == 0:
            self.fail_mark = len(tokens) + 100
        self.fail_streak += 1
        self.events.reasons[f"rollback:{fired}"] += 1
        return back

    def _fired(self, reason: str, n: int) -> None:
        self.events.fired += 1
        self.events.reasons[reason] += 1
        self.boost_until = n + self.rc.boost_tokens
        self.heat_from = n

    def _sentence_end(self, tokens: list[int]) -> tuple[str | None, int | None]:
        sentence = self.table.text(tokens[self.sentence_start:]).strip()
        n_tok = len(tokens) - self.sentence_start
        self.sentence_start = len(tokens)
        if len(sentence) >= self.rc.min_sentence and sentence in self.sentences:
            return "sentence", n_tok
        self.sentences.setdefault(sentence, len(tokens))
        if self.fixation_hi is not None and self.rc.lexical:
            window = self.table.text(tokens[-LONG:])[-LONG:]
            if len(window) >= LONG:
                share, c, word = fixation(window, self.stop)
                # a text that fixated once is watched from the p95 on: caught only at the p99 again,
                # its windows would climb back to the edge of the band each time the penalty fades
                if share > (self.fixation_lo if self.fixation_level else self.fixation_hi):
                    return self._fixated(c, word, sentence, len(tokens), n_tok)
        # released: the penalty fades out over focus_tokens; its level is kept for the next time
        self.fixating = False
        return None, None

    def _fixated(self, char: str, word: str, sentence: str, n: int, n_tok: int) -> tuple[str | None, int | None]:
        """The last 1,000 characters are fixated on `word`. The window stays above the band for
        many sentences after the cure begins, so a sentence without the word is the cure: it only
        keeps the penalty fresh. A sentence that holds it again raises the penalty one step (a model
        trained into the fixation outbids any fixed one) and is rolled back."""
        if char not in sentence and self.fixating:
            self._focus_on(word, n, self.fixation_level)
            return None, None
        self.fixating = True
        self.fixation_level = min(self.fixation_level + self.rc.focus_penalty, FIXATION_STEPS * self.rc.focus_penalty)
        self._focus_on(word, n - n_tok, self.fixation_level)
        return "fixation", n_tok

    def _collapse(self, tokens: list[int]) -> tuple[str | None, int | None]:
        window = self.table.text(tokens[-SHORT:])[-SHORT:]
        share, c = collapse(window)
        if share <= self.collapse_hi:
            return None, None
        back = _tokens_for_chars(self.table, tokens, SHORT // 2)
        self._focus_on(c, len(tokens) - back)
        return "collapse", back

    def _focus_on(self, chars: str, since: int, penalty: float | None = None) -> None:
        """Penalize the tokens holding any of `chars` from token index `since`, fading over focus_tokens."""
        penalty = self.rc.focus_penalty if penalty is None else penalty
        if not chars or penalty <= 0:
            return
        for c in dict.fromkeys(chars):
            for i in self._tokens_of(c):
                self.focus[i] = (penalty, since)

    # -- a rollback

    def forget(self, tokens: list[int], removed: list[int], chars: int) -> None:
        """The slot cut `removed` off its tokens (now `tokens`): forget what they taught."""
        keep = len(tokens)
        if self.counts is not None:
            for t in removed:
                self.counts[t] -= 1
        self.bans = {k: v for k, v in self.bans.items() if k <= keep}  # later positions: another text now
        self.bans.setdefault(keep, set()).add(removed[0])
        self.sam = SuffixAutomaton(self.prompt + tokens)
        self.sentences = {s: i for s, i in self.sentences.items() if i <= keep}
        self.sentence_start = min(self.sentence_start, keep)
        while self.sentence_start > 0 and tokens[self.sentence_start - 1] not in self.sentence_end_ids:
            self.sentence_start -= 1
        self.focus = {t: (p, min(since, keep)) for t, (p, since) in self.focus.items()}
        self.recent.clear()
        self.recent_counts.clear()
        self.recent_hanzi = 0
        self._remember(self.table.text(tokens[-SHORT:])[-SHORT:])
        self.events.rolled_back += 1
        self.events.rolled_back_tokens += len(removed)
        self.rollbacks_at.append(chars)


def _tokens_for_chars(table: TokenTable, tokens: list[int], chars: int) -> int:
    """How many of the last tokens hold the last `chars` characters."""
    n = total = 0
    for t in reversed(tokens):
        if total >= chars:
            break
        total += len(table.pieces[t])
        n += 1
    return n
