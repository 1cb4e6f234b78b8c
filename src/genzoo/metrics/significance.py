"""Is a difference over training seeds more than noise? Welch's t-test (unequal variances) on two groups of
per-seed values, the F-test on their spreads, and the rule that names a winner among several models only when it
separates from every other one.

Welch (1947): t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b), with the Welch–Satterthwaite degrees of freedom
df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a - 1) + (s_b²/n_b)²/(n_b - 1)); the two-sided p-value is the
Student t tail 2·P(T_df > |t|) = I_{df/(df + t²)}(df/2, 1/2), the regularized incomplete beta function. The F-test
of two variances uses the same function: P(F_{d1,d2} ≤ f) = I_{d1 f/(d1 f + d2)}(d1/2, d2/2). I_x(a, b) is
evaluated by its continued fraction (modified Lentz; Press et al., Numerical Recipes §6.4), in plain Python
floats: these are a handful of numbers, and the package has no scipy.

A winner among several models is named only when the best mean separates from each other model's (every p <
alpha). That is an intersection-union test: "best beats all" is claimed only if each pairwise null is rejected,
which keeps the level at alpha without a multiplicity correction. Three seeds per model separate only large
differences; "no clear winner" is then the honest answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
_TINY = 1e-300
_EPS = 1e-15


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),  # the even step, then the odd one
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x == 0.0 or x == 1.0:
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """2·P(T > |t|) for Student's t with df (> 0, not necessarily whole) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float


def welch(a: list[float], b: list[float]) -> Welch:
    """Welch's two-sample t-test of mean(a) = mean(b), two-sided; each group needs two values or more. Two
    groups without any spread: p = 1 for equal means, 0 for different ones (the limit of the test)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch: needs at least two values per group, got {len(a)} and {len(b)}")
    (mean_a, var_a), (mean_b, var_b) = _mean_var(a), _mean_var(b)
    se_a, se_b = var_a / len(a), var_b / len(b)
    if se_a + se_b == 0:
        t = 0.0 if mean_a == mean_b else math.copysign(math.inf, mean_a - mean_b)
        return Welch(t, float(len(a) + len(b) - 2), 1.0 if t == 0 else 0.0)
    t = (mean_a - mean_b) / math.sqrt(se_a + se_b)
    df = (se_a + se_b) ** 2 / (se_a ** 2 / (len(a) - 1) + se_b ** 2 / (len(b) - 1))
    return Welch(t, df, t_two_sided(t, df))


def f_test(a: list[float], b: list[float]) -> float:
    """Two-sided p of the F-test var(a) = var(b) (normal data); each group needs two values or more."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"f_test: needs at least two values per group, got {len(a)} and {len(b)}")
    (_, var_a), (_, var_b) = _mean_var(a), _mean_var(b)
    if var_a == var_b:
        return 1.0
    if var_a == 0 or var_b == 0:
        return 0.0
    d1, d2, f = len(a) - 1.0, len(b) - 1.0, var_a / var_b
    lower = betainc(d1 / 2.0, d2 / 2.0, d1 * f / (d1 * f + d2))  # P(F <= f)
    return min(1.0, 2.0 * min(lower, 1.0 - lower))


@dataclass(frozen=True)
class Separation:
    """The model with the best statistic and whether a test over the seeds separates it from every other one."""
    leader: str
    winner: str | None  # the leader when every p < alpha, else None ("no clear winner")
    p: dict[str, float]  # the leader against each other model; empty when some model has fewer than two seeds
    test: str
    alpha: float = ALPHA

    def text(self, groups: dict[str, list[float]], digits: int = 2) -> str:
        """`**leader** (<test> against each other model over the seeds: p <= max)` or `no clear winner: ...`."""
        if not self.p:
            fewest = min(len(v) for v in groups.values())
            return f"no test with {fewest} seed{'s' * (fewest != 1)} (lowest mean: {self.leader})"
        worst = max(self.p, key=self.p.get)
        if self.winner:
            return f"**{self.winner}** ({self.test} against each other model over the seeds: p ≤ {_p(self.p[worst])})"
        close = [name for name, p in self.p.items() if p >= self.alpha]
        return (f"no clear winner ({self.leader} {_spread(groups[self.leader], digits)} does not separate from "
                + ", ".join(f"{name} {_spread(groups[name], digits)} (p = {_p(self.p[name])})" for name in close)
                + f"; {self.test} over the seeds, α = {self.alpha:g})")


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "< 0.0001"


def _spread(values: list[float], digits: int) -> str:
    mean, var = _mean_var(values) if len(values) > 1 else (values[0], 0.0)
    return f"{mean:.{digits}f} ± {math.sqrt(var):.{digits}f}"


def separate(groups: dict[str, list[float]], *, spread: bool = False, alpha: float = ALPHA) -> Separation:
    """The model with the lowest mean (with `spread`: the lowest variance) of its per-seed values, tested against
    every other model by Welch's t (with `spread`: the F-test); named the winner only if every p < alpha."""
    if len(groups) < 2 or any(not v for v in groups.values()):
        raise ValueError("separate: needs two or more models, each with a value per seed")
    if spread:
        leader = min(groups, key=lambda n: _mean_var(groups[n])[1] if len(groups[n]) > 1 else math.inf)
    else:
        leader = min(groups, key=lambda n: math.fsum(groups[n]) / len(groups[n]))
    test = "F-test" if spread else "Welch's t"
    if any(len(v) < 2 for v in groups.values()):
        return Separation(leader, None, {}, test, alpha)
    compare = f_test if spread else (lambda a, b: welch(a, b).p)
    p = {name: compare(groups[leader], values) for name, values in groups.items() if name != leader}
    return Separation(leader, leader if all(v < alpha for v in p.values()) else None, p, test, alpha)
