"""The iterated matrix game with memory-1 state, for many games at once.

Each game starts from a random initial state (M's and O's "previous moves"), then the agent
and its opponent play ``rounds`` rounds. M sees only its own last move and O's last move
(memory-1). An illegal answer by M earns the illegal-answer reward and does **not** update M's
last move: the next state repeats M's last legal move (docs/science.md §3).

>>> import numpy as np
>>> env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=4, seed=0)
>>> state = env.reset()
>>> result = env.step(np.full(4, D))            # M defects in all four games
>>> result.opp_moves.tolist() == state.my_prev.tolist()   # Tit-for-Tat copied M's previous move
True

``env.frame()`` returns every round played so far as a tidy pandas DataFrame, one row per
round per game, with moves, payoffs, action type and every reward of interest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from .games import C, D, ILLEGAL, MOVE_NAMES, MatrixGame, get_game
from .opponents import Opponent, get_opponent
from .rewards import R_ILLEGAL, XI, Reward, get_reward, is_stateful

__all__ = [
    "ACTION_TYPES",
    "action_types",
    "action_type_shares",
    "State",
    "StepResult",
    "IteratedGame",
    "run_episodes",
    "DEFAULT_RECORDED_REWARDS",
]

ACTION_TYPES: tuple[str, ...] = ("C|C", "C|D", "D|C", "D|D", "illegal")
"""M's move given O's previous move: mutual cooperation, forgiving, exploiting, retaliating, illegal."""

ACTION_TYPE_MEANING = {
    "C|C": "mutual cooperation",
    "C|D": "forgiving",
    "D|C": "exploiting",
    "D|D": "retaliating",
    "illegal": "illegal answer",
}

DEFAULT_RECORDED_REWARDS: tuple[str, ...] = ("game", "deontological", "utilitarian", "game_deontological")


def action_types(my_moves, opp_prev_moves) -> np.ndarray:
    """Vectorised action type ``"<M's move>|<O's previous move>"`` (or ``"illegal"``)."""
    my = np.asarray(my_moves)
    prev = np.asarray(opp_prev_moves)
    names = np.array(["C|C", "C|D", "D|C", "D|D"], dtype=object)
    idx = 2 * np.clip(my, 0, 1) + np.clip(prev, 0, 1)
    return np.where(my < 0, "illegal", names[idx]).astype(object)


def action_type_shares(frame, by: str | list[str] | None = None):
    """Share of each action type (columns in :data:`ACTION_TYPES` order), overall or per group."""
    import pandas as pd

    col = frame["action_type"]
    if by is None:
        return col.value_counts(normalize=True).reindex(list(ACTION_TYPES), fill_value=0.0)
    shares = pd.crosstab([frame[b] for b in ([by] if isinstance(by, str) else by)], col, normalize="index")
    return shares.reindex(columns=list(ACTION_TYPES), fill_value=0.0)


@dataclass
class State:
    """What M sees before a round, for each game in the batch."""

    my_prev: np.ndarray
    """M's last legal move (0 = C, 1 = D)."""
    opp_prev: np.ndarray
    """O's last legal move."""
    round: int
    """Rounds played so far in this episode (0 right after reset)."""

    def __len__(self) -> int:
        return len(self.my_prev)

    def swapped(self) -> "State":
        """The same state as the opponent sees it (for a second learner playing O)."""
        return State(self.opp_prev.copy(), self.my_prev.copy(), self.round)


@dataclass
class StepResult:
    """The outcome of one round in every game of the batch."""

    my_moves: np.ndarray
    opp_moves: np.ndarray
    my_payoffs: np.ndarray
    """M's payoffs (``nan`` where a move was illegal: no game was played)."""
    opp_payoffs: np.ndarray
    rewards: dict[str, np.ndarray]
    """M's rewards by name."""
    opp_rewards: dict[str, np.ndarray]
    """O's rewards by name, computed from O's side of the game (for a second learner)."""
    state: State
    """The state after this round (what M sees next)."""
    done: bool


class IteratedGame:
    """Many independent iterated games advancing in lock-step.

    Parameters
    ----------
    game:
        A :class:`~moralkit.games.MatrixGame` or catalogue name.
    opponent:
        An opponent name or :class:`~moralkit.opponents.Opponent`; ``None`` when a learning
        agent supplies O's moves to :meth:`step` (two learners).
    n_games:
        How many games to play in parallel.
    rounds:
        Rounds per episode (the paper uses 5 against fixed opponents, 3 against a learner).
    rewards:
        Rewards to compute and record each round (names, :class:`~moralkit.rewards.Reward` objects
        or functions); ``xi`` and ``r_illegal`` apply to those given by name.
    seed:
        Seeds the initial states and random opponents.
    """

    def __init__(
        self,
        game: MatrixGame | str,
        opponent: Opponent | str | None = "tit_for_tat",
        n_games: int = 1,
        *,
        rounds: int = 5,
        rewards: Iterable[str | Reward | Callable] | Mapping[str, Reward] = DEFAULT_RECORDED_REWARDS,
        xi: float = XI,
        r_illegal: float = R_ILLEGAL,
        seed: int | np.random.Generator | None = None,
    ):
        self.game = get_game(game)
        self.opponent = get_opponent(opponent) if opponent is not None else None
        if int(n_games) < 1:
            raise ValueError(f"n_games must be at least 1, got {n_games}.")
        if int(rounds) < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}.")
        self.n_games = int(n_games)
        self.rounds = int(rounds)
        items = rewards.values() if isinstance(rewards, Mapping) else rewards
        self.rewards: dict[str, Reward] = {}
        for r in items:
            reward = get_reward(r, xi=xi, r_illegal=r_illegal) if isinstance(r, str) else get_reward(r)
            if hasattr(reward, "tables"):
                reward.tables(self.game)  # an aggregate: a stakeholder constant in this game fails now, not mid-run
            self.rewards[reward.name] = reward
        stateful = [name for name, r in self.rewards.items() if is_stateful(r)]
        if stateful and self.opponent is None:
            raise ValueError(
                f"{stateful} learn stakeholder weights from one learner's rounds, so they cannot score two learners "
                "at once. Train against a fixed opponent, or use a stateless aggregate (average, weighted, "
                "maxmin(...,variant=min))."
            )
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.episode = -1
        self.state: State | None = None
        self._records: list[dict[str, np.ndarray]] = []

    def __repr__(self) -> str:
        opp = self.opponent.name if self.opponent is not None else "external learner"
        return (
            f"IteratedGame({self.game.name!r}, opponent={opp!r}, n_games={self.n_games}, "
            f"rounds={self.rounds}, rewards={list(self.rewards)})"
        )

    # ----------------------------------------------------------------- dynamics
    def reset(self) -> State:
        """Start a new episode in every game from a random initial state."""
        n = self.n_games
        my_prev = self.rng.integers(0, 2, size=n)
        opp_prev = self.opponent.initial_moves(n, self.rng) if self.opponent is not None else self.rng.integers(0, 2, size=n)
        opp_prev = np.asarray(opp_prev, dtype=np.int64)
        if self.opponent is not None:
            self.opponent.reset(my_prev, opp_prev)
        for reward in self.stateful_rewards:
            reward.update()  # a new episode is a new batch: stateful rewards learn from the last one
        self.episode += 1
        self.state = State(my_prev.astype(np.int64), opp_prev, 0)
        return self.state

    @property
    def done(self) -> bool:
        return self.state is not None and self.state.round >= self.rounds

    def step(self, my_moves, opp_moves=None, info: Mapping[str, Iterable] | None = None) -> StepResult:
        """Play one round in every game.

        ``my_moves``: M's moves (0, 1 or -1 for an illegal answer). ``opp_moves``: O's moves when
        O is an external learner (otherwise the fixed opponent chooses). ``info``: extra
        per-game columns to record (e.g. the LLM's raw answers).
        """
        if self.state is None or self.done:
            self.reset()
        s = self.state
        my = _as_moves(my_moves, self.n_games, "my_moves")
        if opp_moves is None:
            if self.opponent is None:
                raise ValueError("This environment has no fixed opponent: pass opp_moves to step().")
            opp = _as_moves(self.opponent.act(s.my_prev, s.opp_prev, self.rng), self.n_games, "opponent moves")
        else:
            opp = _as_moves(opp_moves, self.n_games, "opp_moves")

        pay_m, pay_o = self.game.payoffs_for(my, opp)
        rewards = {name: np.asarray(r(self.game, my, opp, s.opp_prev, my_prev_move=s.my_prev), float)
                   for name, r in self.rewards.items()}
        swapped = self.game.swap_players()
        opp_rewards = {name: np.asarray(r(swapped, opp, my, s.my_prev, my_prev_move=s.opp_prev), float)
                       for name, r in self.rewards.items()}
        for reward in self.stateful_rewards:
            reward.observe(self.game, s.my_prev, s.opp_prev, my, opp)

        record = {
            "episode": np.full(self.n_games, self.episode),
            "game_id": np.arange(self.n_games),
            "round": np.full(self.n_games, s.round + 1),
            "my_prev": s.my_prev,
            "opp_prev": s.opp_prev,
            "my_move": my,
            "opp_move": opp,
            "my_payoff": pay_m,
            "opp_payoff": pay_o,
            **{f"reward_{k}": v for k, v in rewards.items()},
        }
        if self.opponent is None:
            record.update({f"opp_reward_{k}": v for k, v in opp_rewards.items()})
        for key, values in (info or {}).items():
            values = np.asarray(list(values), dtype=object)
            if len(values) != self.n_games:
                raise ValueError(f"info[{key!r}] has {len(values)} entries for {self.n_games} games.")
            record[key] = values
        self._records.append(record)

        legal_my_moves = np.where(my >= 0, my, s.my_prev)
        if self.opponent is not None:
            self.opponent.observe(legal_my_moves, opp)
        self.state = State(legal_my_moves, np.where(opp >= 0, opp, s.opp_prev), s.round + 1)
        return StepResult(my, opp, pay_m, pay_o, rewards, opp_rewards, self.state, self.done)

    @property
    def stateful_rewards(self) -> list[Reward]:
        """Rewards that learn from the rounds played (MaxMin weights): observed every round, updated every episode."""
        return [r for r in self.rewards.values() if is_stateful(r)]

    def reward_states(self) -> dict[str, dict]:
        """What the stateful rewards have learned, by name (for checkpoints)."""
        return {name: r.state_dict() for name, r in self.rewards.items() if is_stateful(r)}

    def load_reward_states(self, states: Mapping[str, dict]) -> None:
        """Restore what :meth:`reward_states` saved."""
        for name, state in states.items():
            if name in self.rewards:
                self.rewards[name].load_state_dict(state)

    # ----------------------------------------------------------------- records
    def frame(self, clear: bool = False):
        """Every round recorded so far as a tidy DataFrame (one row per round per game)."""
        frame = records_to_frame(self._records, self.game.name, self.opponent.name if self.opponent else "learner")
        if clear:
            self._records = []
        return frame

    def clear(self) -> None:
        """Forget the recorded rounds (keeps the state)."""
        self._records = []


def records_to_frame(records: list[dict[str, np.ndarray]], game: str, opponent: str):
    import pandas as pd

    if not records:
        return pd.DataFrame(
            columns=["episode", "game_id", "round", "game", "opponent", "my_prev", "opp_prev", "my_move",
                     "opp_move", "action_type", "my_payoff", "opp_payoff"]
        )
    cols = {k: np.concatenate([r[k] for r in records]) for k in records[0]}
    frame = pd.DataFrame(cols)
    frame.insert(3, "game", game)
    frame.insert(4, "opponent", opponent)
    frame.insert(frame.columns.get_loc("opp_move") + 1, "action_type", action_types(cols["my_move"], cols["opp_prev"]))
    for c in ("my_prev", "opp_prev", "my_move", "opp_move"):
        frame[c] = frame[c].map(MOVE_NAMES)
    return frame


def _as_moves(moves, n: int, what: str) -> np.ndarray:
    arr = np.asarray(moves)
    if arr.shape == ():
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{what} must have one move per game ({n}), got shape {arr.shape}.")
    arr = arr.astype(np.int64)
    bad = ~np.isin(arr, (C, D, ILLEGAL))
    if bad.any():
        raise ValueError(f"{what} must be 0 (C), 1 (D) or -1 (illegal); got {np.unique(arr[bad]).tolist()}.")
    return arr


Policy = Callable[[State, np.random.Generator], "np.ndarray | tuple[np.ndarray, Mapping[str, Iterable]]"]


def run_episodes(env: IteratedGame, policy: Policy, episodes: int, *, progress: bool = False):
    """Play ``episodes`` full episodes (in every game of the batch) and return their rounds.

    ``policy(state, rng)`` returns M's moves, or ``(moves, info)`` with extra columns to record.
    """
    from tqdm.auto import tqdm

    env.clear()
    for _ in tqdm(range(episodes), disable=not progress, desc=f"{env.game.name} vs {env.opponent.name if env.opponent else 'learner'}"):
        state = env.reset()
        while not env.done:
            out = policy(state, env.rng)
            moves, info = out if isinstance(out, tuple) else (out, None)
            state = env.step(moves, info=info).state
    return env.frame()
