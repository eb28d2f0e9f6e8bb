"""The stealing program of Zhang et al. (2024) in PuLP: threat models, lexicographic stages, solver.

Variables (papers.md §4.3): c_v in [0, 1] ("item v is green"; relaxed and rounded at 0.5 as in
the authors' released runs, binary on request), b_s >= 0 (green-count bound of text s), a_s >= 0
(|b_s - gamma L_s| for natural texts, Pro) and w_s in {0, 1} ("text s is trusted", blind only).

- vanilla: labels from a detector with known gamma and z. Every watermarked text has at least
  G*(L) green items, every natural text at most G*(L). One stage: the minimum-weight list.
- oracle: the exact green count g(s) of every text is known: sum_v n_{s,v} c_v = g(s). (The
  authors' code bounds W from below and H from above by g(s); with exact counts the equality is
  implied for the true list and makes the program tighter.) One stage.
- pro: vanilla's constraints; stage 1 maximises mean_W b_s - mean_H |b_s - gamma L_s|, then the
  minimum-weight list that keeps sum_W b >= beta_W opt_W and sum_H b <= beta_H val_H.
- blind (the paper's AS2): no detector, gamma and z unknown, labels noisy. Trusted-text
  indicators w_s with coverage rho_lo..rho_hi per class; stage 1 maximises mean_W b - mean_H b,
  stage 2 as in Pro with the trusted counts locked. By default w_s is relaxed, rounded (the
  largest values, within the coverage bounds), fixed and stage 1 re-solved (relax-and-fix):
  CBC 2.10 overruns its time limit by tens of minutes on the binary program at a few hundred
  texts. `trust="binary"` keeps the authors' binary w_s.

When the hard constraints of vanilla/oracle/pro admit no list at all (labels inconsistent with the
gamma and z given), the program is rebuilt with one slack per text, the total slack is minimised
first and locked, and `elastic` is reported.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pulp

from .stealing_data import StealingConfigError, StealingCorpus, check_gamma

THREATS = ("vanilla", "oracle", "pro", "blind")
WEIGHTS = ("ratio", "mixed", "uniform", "lexical")
SOLVER_ALIASES = {
    "cbc": ("PULP_CBC_CMD", "COIN_CMD"),
    "highs": ("HiGHS", "HiGHS_CMD"),
    "glpk": ("GLPK_CMD", "PYGLPK"),
    "gurobi": ("GUROBI", "GUROBI_CMD"),
    "cplex": ("CPLEX_PY", "CPLEX_CMD"),
    "scip": ("SCIP_PY", "SCIP_CMD"),
    "copt": ("COPT", "COPT_CMD"),
    "mosek": ("MOSEK",),
    "xpress": ("XPRESS_PY", "XPRESS"),
}


@dataclass
class ProgramOptions:
    threat: str = "vanilla"
    gamma: float | None = None  # known green fraction (vanilla/oracle/pro)
    z: float = 4.0  # detector threshold (vanilla/pro)
    vocab_size: int | None = None  # N in the list-size bound sum c <= gamma N
    relax: bool = True  # c in [0, 1] and rounded (authors' runs); False: binary c
    solver: str = "cbc"
    time_limit: float = 60.0  # seconds per solver call
    # stage-2 omega_v: "ratio" freq_H/freq_W for every item, "mixed" (the authors' code: the word
    # class weight where it is above 1, else freq_H/freq_W for items seen in both classes, else 1),
    # "uniform", or "lexical" (word classes only); word classes come from `token_weights`
    weights: str = "ratio"
    threshold_floor: bool = True  # G*(L) floored, as the authors' count_z_score_bound
    # the detector's green probability in G*(L) when it is not gamma: `wm`'s Unigram detector
    # uses K/N, the size of its list (a binomial draw around gamma N), not gamma itself
    null_fraction: float | None = None
    # ours, not the authors': fix c_v = 0 where freq_W/freq_H (add-half smoothed) <= red_below.
    # Without it the minimum-weight list buys coverage with the most frequent tokens, which occur
    # in almost every text of both classes (ratio ~ 1) and are mostly red (stealing.md). Only
    # vanilla and pro use it: oracle's exact counts already pin the list, and on blind's noisy
    # source labels it made the lists longer and less precise (measured, stealing.md).
    red_below: float | None = 1.0
    token_weights: np.ndarray | None = field(default=None, repr=False)
    beta_w: float = 0.95  # stage-1 lock on sum_W b (authors' default wm_bound)
    beta_h: float = 1.05  # stage-1 lock on sum_H b (authors' default nl_bound)
    rho: tuple[float, float] = (0.98, 0.99)  # blind: trusted fraction of each class, low and high
    round_at: float = 0.5
    trust: str = "relax-and-fix"  # blind w_s: LP, round, fix, re-solve; "binary": CBC MIP (can overrun)
    exact_counts: np.ndarray | None = field(default=None, repr=False)  # oracle: g(s) per corpus text

    def validate(self, corpus: StealingCorpus) -> None:
        if self.threat not in THREATS:
            raise StealingConfigError(f"unknown threat model {self.threat!r}; known: {', '.join(THREATS)}")
        check_gamma(self.gamma, required=self.threat in ("vanilla", "pro"))
        check_gamma(self.null_fraction)
        if self.threat in ("vanilla", "pro") and not self.z > 0:
            raise StealingConfigError(f"z must be > 0, got {self.z}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise StealingConfigError(f"time limit must be > 0 seconds, got {self.time_limit}")
        if self.trust not in ("relax-and-fix", "binary"):
            raise StealingConfigError(f"unknown trust mode {self.trust!r}; known: relax-and-fix, binary")
        if self.weights not in WEIGHTS:
            raise StealingConfigError(f"unknown weights {self.weights!r}; known: {', '.join(WEIGHTS)}")
        if self.weights == "lexical" and self.token_weights is None:
            raise StealingConfigError("lexical weights need one weight per vocabulary id (token_weights)")
        if self.token_weights is not None and self.weights in ("lexical", "mixed"):
            top = int(corpus.items[:, -1].max()) if corpus.num_items else -1
            if top >= len(self.token_weights):
                raise StealingConfigError(
                    f"token id {top} has no lexical weight ({len(self.token_weights)} given): wrong tokenizer?"
                )
        lo, hi = self.rho
        if not 0.0 < lo <= hi <= 1.0:
            raise StealingConfigError(
                f"coverage bounds must satisfy 0 < rho_lo <= rho_hi <= 1, got {self.rho}"
            )
        if self.threat == "oracle":
            if self.exact_counts is None:
                raise StealingConfigError("the oracle threat model needs the exact green count of every text")
            if len(self.exact_counts) != corpus.num_texts:
                raise StealingConfigError(
                    f"oracle: {len(self.exact_counts)} green counts for {corpus.num_texts} texts"
                )


@dataclass
class SolverStats:
    """What the solver did: per-stage status/objective/time and the program's size."""

    solver: str
    threat: str
    relaxed: bool
    status: str = "Not Solved"
    objective: float | None = None  # final stage: weight of the (fractional) list
    stage1_objective: float | None = None
    slack: float | None = None  # total slack when the hard program was infeasible (elastic)
    elastic: bool = False
    build_s: float = 0.0
    solve_s: float = 0.0
    variables: int = 0
    constraints: int = 0
    items: int = 0
    texts: int = 0
    fractional: int = 0  # c strictly between 0.01 and 0.99 before rounding
    solver_peak_rss_mb: float | None = None  # largest solver subprocess so far (CBC runs as one)
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_solver(
    name: str, time_limit: float | None, msg: bool = False, mip_start: bool = False
) -> pulp.LpSolver:
    """A PuLP solver by short name (cbc, highs, glpk, gurobi, ...) or PuLP class name.

    `mip_start`: pass the variables' current values as a start. For CBC it also turns CBC's
    primal heuristics off: CBC 2.10 can run far past its time limit inside a root heuristic on
    the blind program (and in root cut generation), while with a start, no heuristics and no
    cuts it stops on time with that incumbent.
    """
    wanted = SOLVER_ALIASES.get(name.lower(), (name,))
    known = {s.lower(): s for s in pulp.listSolvers()}
    tried = []
    for cand in wanted:
        cls_name = known.get(cand.lower())
        if cls_name is None:
            continue
        kwargs: dict[str, Any] = {"msg": msg}
        if time_limit is not None:
            kwargs["timeLimit"] = time_limit
        if mip_start:
            kwargs["warmStart"] = True
            if cls_name in ("PULP_CBC_CMD", "COIN_CMD"):
                kwargs["options"] = ["heur off", "cuts off"]
        solver = pulp.getSolver(cls_name, **kwargs)
        if solver.available():
            return solver
        tried.append(cls_name)
    avail = ", ".join(pulp.listSolvers(onlyAvailable=True))
    why = "is not installed" if tried or name.lower() in SOLVER_ALIASES else "is not a PuLP solver"
    raise StealingConfigError(f"solver {name!r} {why}; available here: {avail}")


def thresholds(lengths: np.ndarray, gamma: float, z: float, floor: bool = False) -> np.ndarray:
    """G*(L) = gamma L + z sqrt(L gamma (1 - gamma)): the detector's green count at z.

    `floor=True` rounds down as the authors' `count_z_score_bound` does: a text with
    g >= floor(G*) counts as watermarked and one with g <= floor(G*) as natural."""
    L = lengths.astype(np.float64)
    g = gamma * L + z * np.sqrt(L * gamma * (1.0 - gamma))
    return np.floor(g) if floor else g


def item_weights(corpus: StealingCorpus, kind: str, token_weights: np.ndarray | None = None) -> np.ndarray:
    """omega_v for the minimum-weight stage.

    - "ratio": freq_H/freq_W (add-half smoothed) for every item;
    - "mixed": the authors' `greenlist_inversion_plus.py`: the word-class weight where it is above
      1 (stop words, one- and two-character tokens), else freq_H/freq_W (unsmoothed) for items
      seen in both classes, else 1 (without `token_weights` every item is in class 1);
    - "uniform": 1; "lexical": the word-class weight of the item's token (for h >= 1 the last
      token of the (context, token) pair)."""
    if kind == "uniform":
        return np.ones(corpus.num_items)
    if kind == "lexical":
        if token_weights is None:
            raise StealingConfigError("lexical weights need one weight per vocabulary id")
        return np.asarray(token_weights, dtype=np.float64)[corpus.items[:, -1]]
    w, h = corpus.class_totals()
    if kind == "mixed":
        out = np.ones(corpus.num_items)
        both = (w > 0) & (h > 0)
        out[both] = (h[both] / h.sum()) / (w[both] / w.sum())
        if token_weights is not None:
            lex = np.asarray(token_weights, dtype=np.float64)[corpus.items[:, -1]]
            out = np.where(lex > 1, lex, out)
        return out
    fw = (w + 0.5) / (w.sum() + 0.5 * len(w))
    fh = (h + 0.5) / (h.sum() + 0.5 * len(h))
    return fh / fw


class _Program:
    """One PuLP problem with the constraints shared by every stage."""

    def __init__(self, corpus: StealingCorpus, opts: ProgramOptions, elastic: bool):
        self.corpus, self.opts, self.elastic = corpus, opts, elastic
        self.prob = pulp.LpProblem("green_list_stealing", pulp.LpMinimize)
        cat = pulp.LpContinuous if opts.relax else pulp.LpBinary
        n_items = corpus.num_items
        self.c = [pulp.LpVariable(f"c{j}", 0, 1, cat) for j in range(n_items)]
        if opts.red_below is not None and opts.threat in ("vanilla", "pro"):
            # items not more frequent in watermarked than in natural text are fixed to red
            for j in np.flatnonzero(1.0 / item_weights(corpus, "ratio") <= opts.red_below):
                self.c[j].upBound = 0
        self.lengths = corpus.lengths.astype(np.float64)
        self.is_w = corpus.watermarked
        self.slacks: list[pulp.LpVariable] = []
        csr = corpus.counts
        self.green_expr = []
        for s in range(corpus.num_texts):
            lo, hi = csr.indptr[s], csr.indptr[s + 1]
            terms = [(self.c[j], float(v)) for j, v in zip(csr.indices[lo:hi], csr.data[lo:hi], strict=True)]
            self.green_expr.append(pulp.LpAffineExpression(terms))
        self.b: dict[int, pulp.LpVariable] = {}
        self.a: dict[int, pulp.LpVariable] = {}
        self.w: dict[int, pulp.LpVariable] = {}
        getattr(self, f"_build_{opts.threat}")()
        if opts.gamma is not None and opts.vocab_size and corpus.context_width == 0:
            # one list of gamma N tokens; for h >= 1 every context has its own list of gamma N,
            # which never binds on the few pairs observed per context, so no bound is added
            self.prob += pulp.lpSum(self.c) <= opts.gamma * opts.vocab_size, "list_size"

    # ---- constraints per threat model ------------------------------------------------------------
    def _slack(self, s: int, tag: str) -> pulp.LpAffineExpression | float:
        if not self.elastic:
            return 0.0
        e = pulp.LpVariable(f"e{tag}{s}", 0)
        self.slacks.append(e)
        return e

    def gstar(self) -> np.ndarray:
        o = self.opts
        frac = o.null_fraction if o.null_fraction is not None else o.gamma
        return thresholds(self.lengths, frac, o.z, floor=o.threshold_floor)

    def _build_vanilla(self) -> None:
        g = self.gstar()
        for s, expr in enumerate(self.green_expr):
            if self.is_w[s]:
                self.prob += expr + self._slack(s, "w") >= float(g[s]), f"W{s}"
            else:
                self.prob += expr - self._slack(s, "h") <= float(g[s]), f"H{s}"

    def _build_oracle(self) -> None:
        counts = np.asarray(self.opts.exact_counts, dtype=np.float64)
        for s, expr in enumerate(self.green_expr):
            if self.elastic:
                self.prob += expr + self._slack(s, "p") - self._slack(s, "m") == float(counts[s]), f"G{s}"
            else:
                self.prob += expr == float(counts[s]), f"G{s}"

    def _build_pro(self) -> None:
        gamma = self.opts.null_fraction if self.opts.null_fraction is not None else self.opts.gamma
        g = self.gstar()
        for s, expr in enumerate(self.green_expr):
            L = float(self.lengths[s])
            b = self.b[s] = pulp.LpVariable(f"b{s}", 0, L)
            if self.is_w[s]:
                self.prob += expr >= b, f"W{s}"
                self.prob += b + self._slack(s, "w") >= float(g[s]), f"Wg{s}"
            else:
                self.prob += expr <= b, f"H{s}"
                self.prob += b - self._slack(s, "h") <= float(g[s]), f"Hg{s}"
                a = self.a[s] = pulp.LpVariable(f"a{s}", 0)
                self.prob += a >= b - gamma * L, f"Ap{s}"
                self.prob += a >= gamma * L - b, f"Am{s}"

    def _build_blind(self) -> None:
        lo, hi = self.opts.rho
        for s, expr in enumerate(self.green_expr):
            L = float(self.lengths[s])
            b = self.b[s] = pulp.LpVariable(f"b{s}", 0, L)
            cat = pulp.LpBinary if self.opts.trust == "binary" else pulp.LpContinuous
            w = self.w[s] = pulp.LpVariable(f"w{s}", 0, 1, cat)
            self.prob += b <= L * w, f"B{s}"
            if self.is_w[s]:
                self.prob += expr >= b - 2 * L * (1 - w), f"W{s}"
            else:
                self.prob += expr <= b + 2 * L * (1 - w), f"H{s}"
        for label, tag in ((True, "W"), (False, "H")):
            ws = [self.w[s] for s in range(len(self.green_expr)) if self.is_w[s] == label]
            self.prob += pulp.lpSum(ws) >= math.floor(lo * len(ws)), f"rho_lo_{tag}"
            self.prob += pulp.lpSum(ws) <= math.ceil(hi * len(ws)), f"rho_hi_{tag}"

    # ---- stages ----------------------------------------------------------------------------------
    def sum_b(self, label: bool) -> pulp.LpAffineExpression:
        return pulp.lpSum(b for s, b in self.b.items() if self.is_w[s] == label)

    def warm_start(self, ratio: np.ndarray) -> None:
        """A feasible start for blind: c_v = [ratio_v < 1] (more frequent in W), b at its bound,
        and the texts that fit worst (low green share in W, high in H) distrusted up to rho_hi."""
        c0 = (ratio < 1.0).astype(np.float64)
        for var, v in zip(self.c, c0, strict=True):
            var.setInitialValue(float(v))
        green = self.corpus.counts @ c0
        share = green / np.maximum(self.lengths, 1.0)
        _, hi = self.opts.rho
        for label in (True, False):
            idx = np.flatnonzero(self.is_w == label)
            keep = math.ceil(hi * len(idx))
            order = idx[np.argsort(-share[idx] if label else share[idx], kind="stable")]
            trusted = set(order[:keep].tolist())
            for s in idx:
                on = s in trusted
                self.w[s].setInitialValue(1.0 if on else 0.0)
                self.b[s].setInitialValue(float(min(green[s], self.lengths[s])) if on else 0.0)

    def fix_trust(self) -> None:
        """Relax-and-fix: trust the texts with the largest relaxed w_s, as many per class as
        the coverage bounds allow (w >= 0.5 where possible), and fix every w_s to 0 or 1."""
        lo, hi = self.opts.rho
        for label in (True, False):
            idx = [s for s in self.w if self.is_w[s] == label]
            vals = np.array([_value(self.w[s]) for s in idx])
            keep = int(np.clip((vals >= 0.5).sum(), math.floor(lo * len(idx)), math.ceil(hi * len(idx))))
            trusted = {idx[i] for i in np.argsort(-vals, kind="stable")[:keep]}
            for s in idx:
                v = 1.0 if s in trusted else 0.0
                self.w[s].lowBound = self.w[s].upBound = v

    def stage1_objective(self) -> pulp.LpAffineExpression:
        n_w, n_h = int(self.is_w.sum()), int((~self.is_w).sum())
        if self.opts.threat == "pro":
            return self.sum_b(True) / n_w - pulp.lpSum(self.a.values()) / n_h
        return self.sum_b(True) / n_w - self.sum_b(False) / n_h


def _value(x: Any) -> float:
    v = pulp.value(x)
    return float(v) if v is not None else float("nan")


def _peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


class _Runner:
    def __init__(self, prog: _Program, solver: pulp.LpSolver, stats: SolverStats):
        self.prog, self.solver, self.stats = prog, solver, stats

    def solve(self, name: str, objective: Any, sense: int) -> tuple[str, float]:
        p = self.prog.prob
        p.sense = sense
        p.setObjective(objective)
        t0 = time.perf_counter()
        p.solve(self.solver)
        dt = time.perf_counter() - t0
        status = pulp.LpSolution.get(p.sol_status, pulp.LpStatus.get(p.status, "Undefined"))
        obj = _value(p.objective) if p.sol_status in (1, 2) else float("nan")
        self.stats.solve_s += dt
        self.stats.stages.append({"stage": name, "status": status, "objective": obj, "seconds": round(dt, 3)})
        return status, obj


def _feasible(status: str) -> bool:
    return status in ("Optimal Solution Found", "Solution Found")


def solve_program(corpus: StealingCorpus, opts: ProgramOptions) -> tuple[np.ndarray, np.ndarray, SolverStats]:
    """Solve the stealing program: (green mask over corpus items, raw c values, statistics)."""
    opts.validate(corpus)
    binary_trust = opts.threat == "blind" and opts.trust == "binary"
    solver = get_solver(opts.solver, opts.time_limit, mip_start=binary_trust)
    stats = SolverStats(solver=opts.solver, threat=opts.threat, relaxed=opts.relax)
    stats.items, stats.texts = corpus.num_items, corpus.num_texts
    weights = item_weights(corpus, opts.weights, opts.token_weights)
    elastic_allowed = opts.threat != "blind"  # blind's trusted-text indicators already absorb noise
    for elastic in (False, True) if elastic_allowed else (False,):
        t0 = time.perf_counter()
        prog = _Program(corpus, opts, elastic)
        if binary_trust:
            prog.warm_start(item_weights(corpus, "ratio"))
        stats.build_s += time.perf_counter() - t0
        stats.variables, stats.constraints = prog.prob.numVariables(), prog.prob.numConstraints()
        stats.elastic = elastic
        run = _Runner(prog, solver, stats)
        if elastic:
            status, slack = run.solve("min_slack", pulp.lpSum(prog.slacks), pulp.LpMinimize)
            if not _feasible(status):
                break
            stats.slack = slack
            prog.prob += pulp.lpSum(prog.slacks) <= slack * (1 + 1e-6) + 1e-6, "lock_slack"
        if opts.threat in ("pro", "blind"):
            status, obj = run.solve("separation", prog.stage1_objective(), pulp.LpMaximize)
            if not _feasible(status):
                if elastic or not elastic_allowed:
                    break
                continue
            if opts.threat == "blind" and not binary_trust:
                prog.fix_trust()
                status, obj = run.solve("separation_fixed_trust", prog.stage1_objective(), pulp.LpMaximize)
                if not _feasible(status):
                    break
            stats.stage1_objective = obj
            val_w, val_h = _value(prog.sum_b(True)), _value(prog.sum_b(False))
            prog.prob += prog.sum_b(True) >= opts.beta_w * val_w, "lock_W"
            prog.prob += prog.sum_b(False) <= opts.beta_h * val_h + 1e-6, "lock_H"
            if opts.threat == "blind":
                for label, tag in ((True, "W"), (False, "H")):
                    ws = [w for s, w in prog.w.items() if prog.is_w[s] == label]
                    prog.prob += pulp.lpSum(ws) >= round(_value(pulp.lpSum(ws))), f"lock_trusted_{tag}"
        min_weight = pulp.lpSum(float(wt) * c for wt, c in zip(weights, prog.c, strict=True))
        status, obj = run.solve("min_weight", min_weight, pulp.LpMinimize)
        stats.status, stats.objective = status, obj
        stats.variables, stats.constraints = prog.prob.numVariables(), prog.prob.numConstraints()
        if _feasible(status):
            break
    stats.solver_peak_rss_mb = round(_peak_child_rss_mb(), 1)
    stats.build_s = round(stats.build_s, 3)
    stats.solve_s = round(stats.solve_s, 3)
    if not _feasible(stats.status):
        raise StealingConfigError(
            f"the {opts.threat} program has no solution ({stats.status}); the labels may not match "
            "the gamma and z given, or the time limit is too short"
        )
    values = np.array([_value(c) for c in prog.c])
    values = np.nan_to_num(values, nan=0.0)
    stats.fractional = int(((values > 0.01) & (values < 0.99)).sum())
    return values >= opts.round_at, values, stats
