"""Result tables people compare: printed with rich, written as CSV, Markdown and a PNG chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join([table.index.name or ""] + list(table.columns)) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    rows = [
        "| " + " | ".join([str(index)] + [_cell(v) for v in row]) + " |" for index, row in zip(table.index, table.itertuples(index=False))
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def print_table(table: pd.DataFrame, title: str, console: Console | None = None) -> None:
    shown = Table(title=title, title_justify="left")
    shown.add_column(table.index.name or "", style="bold")
    for column in table.columns:
        shown.add_column(str(column), justify="right")
    for index, row in zip(table.index, table.itertuples(index=False)):
        shown.add_row(str(index), *(_cell(v) for v in row))
    (console or Console()).print(shown)


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> None:
    """Lay the figure out, write it as a PNG and free it (figures are files here, never windows)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_metrics(table: pd.DataFrame, metrics: list[str], path: Path, title: str) -> None:
    """Grouped bars: one group per metric, one bar per method."""
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(metrics), 4))
    width = 0.8 / len(table)
    x = np.arange(len(metrics))
    for i, (method, row) in enumerate(table[metrics].iterrows()):
        ax.bar(x + i * width - 0.4 + width / 2, row.to_numpy(dtype=float), width, label=str(method))
    ax.set_xticks(x, metrics)
    ax.set_ylabel("score (test split, full ranking)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, dpi=120)


def plot_learning_curves(curves: dict[str, tuple[pd.Series, pd.Series]], ylabel: str, path: Path, title: str) -> None:
    """One line per run: name -> (epochs, validation metric per epoch)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (epochs, values) in curves.items():
        ax.plot(epochs, values, "o-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)


def write_table(table: pd.DataFrame, directory: Path, stem: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    csv, markdown = directory / f"{stem}.csv", directory / f"{stem}.md"
    table.to_csv(csv)
    markdown.write_text(to_markdown(table))
    return [csv, markdown]
