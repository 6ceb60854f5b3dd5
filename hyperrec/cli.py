"""The `hyperrec` command: one entry point for data, evaluation, training, export, serving, benchmarks and the demo."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from hyperrec import logs
from hyperrec.config import SyntheticConfig, apply_overrides, load_config, validate

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEMO_CONFIG = REPO_CONFIGS / "eval" / "instacart_baselines.yaml"


def _console() -> Console:
    # Wide enough for the result tables even when output goes to a file or a CI log.
    return Console(width=max(shutil.get_terminal_size((160, 40)).columns, 160))


def cmd_eval(args: argparse.Namespace) -> None:
    from hyperrec.eval.run import run_eval, validate_methods

    config = load_config(args.config, args.overrides)
    validate_methods(config, args.config)
    run_eval(config, _console())


def cmd_train(args: argparse.Namespace) -> None:
    from hyperrec.eval.report import print_table
    from hyperrec.train.launcher import run_training
    from hyperrec.train.model_factory import model_config

    config = load_config(args.config, args.overrides)
    model_config(config, args.config)  # fail on bad model params before Ray starts
    record = run_training(config, resume=args.resume)
    test = pd.DataFrame({record["run"]: record["test"]}).T
    print_table(
        test[[c for c in test.columns if c.split("@")[0] in ("recall", "ndcg", "hit", "explore_recall", "repeat_recall")]],
        f"test split, best epoch {record['best_epoch']}",
        _console(),
    )
    _console().print(
        f"run {record['run']}: {record['wall_seconds']:.0f}s, {record['samples_per_s']:.0f} training "
        f"examples/s -> {config.tracking.runs_dir / record['run']}"
    )


def cmd_sweep(args: argparse.Namespace) -> None:
    from hyperrec.config import SweepConfig
    from hyperrec.train.sweep import run_sweep

    run_sweep(load_config(args.config, args.overrides, SweepConfig), args.config, _console())


def cmd_compare(args: argparse.Namespace) -> None:
    from hyperrec.eval.compare import compare_runs

    compare_runs(args.runs, args.out, _console())


def cmd_recommend(args: argparse.Namespace) -> None:
    from hyperrec.data.sequences import make_split
    from hyperrec.data.sources import load_dataset
    from hyperrec.eval.run import build_fixed
    from hyperrec.train.recommend import fit_for_serving, recommendations_frame, resolve_method, select_users, write_recommendations
    from hyperrec.train.runs import load_run, resolve_run, run_config

    started = time.perf_counter()
    run = resolve_run(args.model)
    if run is not None:
        config = load_config(args.config, args.overrides) if args.config else run_config(run)
        dataset = load_dataset(config.data)
        split = make_split(dataset, config.data)
        model = load_run(run, dataset.catalog).fit(split.full)
        described = f"run {run}"
    else:
        config = load_config(args.config or DEMO_CONFIG, args.overrides)
        dataset = load_dataset(config.data)
        split = make_split(dataset, config.data)
        method = config.methods.get(args.model)
        if method is not None and method.kind in ("run", "pipeline"):
            model = build_fixed(method, dataset.catalog).fit(split.full)
            described = f"{args.model} ({method.kind})"
        else:
            kind, params, origin = resolve_method(config, args.model)
            model = fit_for_serving(kind, params, split)
            described = f"{args.model} ({kind}, params {origin}: {params})"
    users = select_users(split, args.users)
    frame = recommendations_frame(model, split, users, args.k)
    write_recommendations(frame, args.out)
    _console().print(f"{described}: {len(users):,} users x top-{args.k} in {time.perf_counter() - started:.1f}s -> {args.out}")


def cmd_data_synthetic(args: argparse.Namespace) -> None:
    from hyperrec.data.offline_store import OfflineStore
    from hyperrec.data.synthetic import write_synthetic

    if args.config:
        config = load_config(args.config, args.overrides, SyntheticConfig)
    else:
        config = validate(apply_overrides({}, args.overrides), "command line", SyntheticConfig)
    store = OfflineStore(args.store)
    if store.has_events():
        raise ValueError(f"--store {args.store} already holds events; generate into a new store (a second shop would mix with the first)")
    started = time.perf_counter()
    n = write_synthetic(config, store)
    _console().print(f"wrote {n:,} synthetic events and {config.n_items:,} items to {args.store} in {time.perf_counter() - started:.1f}s")


def cmd_data_ingest(args: argparse.Namespace) -> None:
    from hyperrec.data.file_source import load_event_file
    from hyperrec.data.offline_store import OfflineStore, file_hash

    store = OfflineStore(args.store)
    previous = store.ingested().get(file_hash(args.file))
    if previous and not args.force:
        raise ValueError(
            f"{args.file}: this content was already ingested into {args.store} at {previous['at']} (as "
            f"{previous['file']}); --force appends it again"
        )
    dataset = load_event_file(args.file, args.catalog, skip_invalid=args.skip_invalid)
    n = store.append(dataset.events)
    store.write_catalog(dataset.catalog)
    store.record_ingest(args.file, n)
    _console().print(f"{args.file}: {n:,} events appended to {args.store} ({len(dataset.catalog):,} catalog items merged)")


def cmd_demo(args: argparse.Namespace) -> None:
    from hyperrec.demo import run_demo

    run_demo(_console(), args.port, wait=not args.no_wait, registry=args.registry, overrides=args.overrides)


def cmd_export(args: argparse.Namespace) -> None:
    from hyperrec.export.report import print_export
    from hyperrec.export.run import ExportConfig, export_run

    raw = apply_overrides({"registry": str(args.registry), "gpu": args.gpu, "promote": not args.no_promote}, args.overrides)
    result = export_run(args.run, validate(raw, "<export options>", ExportConfig), log=_console().print)
    print_export(result, _console())


def cmd_serve(args: argparse.Namespace) -> None:
    from hyperrec.serve.config import load_serve_config
    from hyperrec.serve.ray_env import prepare_environment

    given = {"registry": args.registry, "version": args.version, "port": args.port, "host": args.host}  # flags win over the YAML
    overrides = [f"{key}={value}" for key, value in given.items() if value is not None] + args.overrides
    config = load_serve_config(args.config, overrides)
    if args.model is not None:  # a training run: export it first (without moving CURRENT), then serve that version
        from hyperrec.export.run import ExportConfig, export_run
        from hyperrec.train.runs import require_run

        try:
            run = require_run(args.model)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--model {error}; use --version for a registry version") from None
        result = export_run(run, ExportConfig(registry=config.registry, promote=False), log=_console().print)
        config = config.model_copy(update={"version": result.version})
    from hyperrec.registry import Registry

    Registry(config.registry).resolve(config.version)  # a missing model is a clear error before Ray starts
    prepare_environment(config)  # before Ray Serve is imported
    from hyperrec.serve.app import read_tokens
    from hyperrec.serve.runner import start, wait_then_stop

    url = start(config, handle_signals=True)
    _console().print(f"serving {config.registry} ({config.version}) at [bold]{url}[/] (docs: {url}/docs); Ctrl-C or SIGTERM stops")
    tokens = read_tokens(config.admin)
    _console().print(
        f"admin calls {'on' if tokens.admin else 'off'} (${config.admin.token_env}), stock and price events "
        f"{'on' if tokens.admin or tokens.catalog else 'off'} (${config.admin.catalog_token_env}): README 'Admin and security'"
    )
    wait_then_stop()


def cmd_email(args: argparse.Namespace) -> None:
    from hyperrec.serve.config import load_serve_config
    from hyperrec.serve.email_lists import email_lists

    given = {"registry": args.registry, "version": args.version, "event_log": args.event_log}  # flags win over the YAML
    config = load_serve_config(args.config, [f"{key}={value}" for key, value in given.items() if value is not None] + args.overrides)
    email_lists(config, args.out, args.sent_log, args.k, args.max_sends, log=_console().print)


def cmd_audit(args: argparse.Namespace) -> None:
    from hyperrec.serve.audit_report import run_audit
    from hyperrec.serve.config import load_serve_config

    if not (args.user or args.session or args.decision or args.verify or args.model_events):
        raise ValueError("say what to look up: --user ID, --session ID, --decision TRACE_ID or --model-events (and/or --verify)")
    config = load_serve_config(args.config, args.overrides)
    run_audit(
        args.path or config.audit_folder(),
        config.privacy,
        _console(),
        user=args.user,
        session=args.session,
        decision=args.decision,
        item=args.item,
        check=args.verify,
        model_events=args.model_events,
        limit=args.limit,
    )


def cmd_monitor(args: argparse.Namespace) -> None:
    from hyperrec.bench.monitor_report import run_monitor
    from hyperrec.serve.config import load_serve_config

    config = load_serve_config(args.config, args.overrides)
    url = args.url or f"http://{config.host}:{config.port}"
    run_monitor(url, args.out, _console(), score_psi_bound=config.monitors.score_psi_bound)


def cmd_erase(args: argparse.Namespace) -> None:
    from hyperrec.serve.config import load_serve_config
    from hyperrec.serve.erasure import erase_offline

    config = load_serve_config(args.config, args.overrides)
    if args.event_log is not None:
        config = config.model_copy(update={"event_log": args.event_log})
    result = erase_offline(args.user, config, args.offline_store)
    print(result.model_dump_json(indent=2))
    if config.store.kind != "redis":
        print("online store: memory, inside the server: erase there with POST /admin/erase", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> None:
    from hyperrec.serve.config import load_serve_config
    from hyperrec.serve.ray_env import prepare_environment

    config = load_serve_config(args.config, args.overrides)
    prepare_environment(config)  # before Ray Serve is imported
    from hyperrec.bench.bundles import HistoryProfile
    from hyperrec.bench.run import run_bench

    def numbers(text: str) -> list[float]:
        return [float(x) for x in text.split(",") if x.strip()]

    if args.version is not None and args.registry is None:
        raise ValueError("--version needs --registry: the registry folder that holds it (e.g. experiments/registry)")
    orders, items_per_order = numbers(args.profile)
    profile = HistoryProfile(orders_per_user=orders, items_per_order=items_per_order)
    sizes = [int(x) for x in numbers(args.sizes)]
    run_bench(
        config,
        args.items,
        numbers(args.rates),
        args.seconds,
        sizes,
        args.size_rate,
        args.out,
        args.registry_root,
        _console(),
        version=args.version,
        registry=args.registry,
        profile=profile,
        client=args.client,
    )


def cmd_experiment_analyze(args: argparse.Namespace) -> None:
    from hyperrec.experiment.analyze import analyze, print_analysis

    print_analysis(analyze(args.logs, args.name, args.out, args.config, args.metric, args.pre_days), args.name, _console())


def cmd_experiment_collect(args: argparse.Namespace) -> None:
    from hyperrec.serve.config import load_serve_config
    from hyperrec.serve.experiment_logs import collect

    spec, exposures, outcomes = collect(load_serve_config(args.config, args.overrides), args.logs, args.attribution_s)
    _console().print(f"{spec.name}: {exposures:,} exposures and {outcomes:,} outcomes -> {args.logs / spec.name}")
    _console().print(f"next: hyperrec experiment analyze {spec.name} --logs {args.logs}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from hyperrec.sim.config import load_sim_config
    from hyperrec.sim.run import print_simulation, simulate, write_history

    config = load_sim_config(args.config, args.overrides)
    if args.write_history is not None:
        written = write_history(config, args.write_history)
        _console().print(f"{written:,} events of the first {config.history_days} days -> {args.write_history} (data.source: store)")
        return
    print_simulation(simulate(config), config, _console())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperrec", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="also print the libraries' own logs (Ray, TorchRec, FAISS, ONNX)")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. data.split=time")

    p = commands.add_parser("eval", help="tune methods on validation and compare them on test (full ranking)")
    p.add_argument("config", type=Path)
    with_overrides(p)
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("train", help="train a model on Ray Train (early stopping, checkpoints, wandb offline)")
    p.add_argument("config", type=Path)
    p.add_argument("--resume", type=Path, help="a run directory to continue from its latest checkpoint")
    with_overrides(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("sweep", help="Ray Tune search (ASHA) over any config keys; table and plots at the end")
    p.add_argument("config", type=Path)
    with_overrides(p)
    p.set_defaults(func=cmd_sweep)

    p = commands.add_parser("compare", help="finished runs side by side: table, paired intervals, plots")
    p.add_argument("runs", type=Path, nargs="+", help="run directories (the first is the reference)")
    p.add_argument("--out", type=Path, default=Path("experiments/results"))
    p.set_defaults(func=cmd_compare)

    p = commands.add_parser("recommend", help="fit a method on all the data and write top-k lists")
    p.add_argument("--model", required=True, help="a training run directory, a method of the config (e.g. tifu_knn) or a baseline kind")
    p.add_argument("--config", type=Path, help=f"experiment config (default: the run's own, or {DEMO_CONFIG.name})")
    p.add_argument("--users", default="all", help="'all' or comma-separated user ids")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--out", type=Path, required=True, help="output .parquet or .csv: user_id, rank, item_id, score")
    with_overrides(p)
    p.set_defaults(func=cmd_recommend)

    data = commands.add_parser("data", help="make or ingest event data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synthetic", help="generate the seeded synthetic shop into a new offline store")
    p.add_argument("--config", type=Path, help="YAML with SyntheticConfig keys (default: built-in sizes)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="shop settings, e.g. n_items=50000 n_users=100000 seed=1")
    p.set_defaults(func=cmd_data_synthetic)
    p = data.add_parser("ingest", help="validate a CSV/Parquet event file and append it to an offline store")
    p.add_argument("file", type=Path)
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--catalog", type=Path, help="CSV/Parquet catalog (item_id, category, price, margin, stock, title)")
    p.add_argument("--skip-invalid", action="store_true", help="append the valid rows when some break the contract")
    p.add_argument("--force", action="store_true", help="append a file even if the same content was ingested before")
    p.set_defaults(func=cmd_data_ingest)

    p = commands.add_parser("export", help="a training run to ONNX (+ parity), served ranker, Triton repository, registry version")
    p.add_argument("run", type=Path, help="a training run directory (experiments/runs/...)")
    p.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    p.add_argument("--gpu", action="store_true", help="Triton config for GPU instances (KIND_GPU)")
    p.add_argument("--no-promote", action="store_true", help="publish the version without moving CURRENT")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="export options, e.g. cutoffs=3 ranker.epochs=4 min_delta=0.005")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("serve", help="the HTTP endpoint (Ray Serve): retrieval, batched ranking, business policy")
    p.add_argument("--config", type=Path, help="serve YAML (configs/serve/...); defaults otherwise")
    p.add_argument("--registry", type=Path, help="registry root (default: experiments/registry)")
    p.add_argument("--version", help="current (default), last-good, latest or vNNNN")
    p.add_argument("--model", type=Path, help="a training run: exported into the registry (CURRENT unchanged), then served")
    p.add_argument("--host", help="default 127.0.0.1")
    p.add_argument("--port", type=int, help="default 8000")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. store.kind=redis ranking.max_batch_size=64")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("email", help="email lists from the served model for every shopper who consented to email")
    p.add_argument("--config", type=Path, help="serve YAML (its registry, version, event log and consent defaults)")
    p.add_argument("--registry", type=Path, help="registry root (default: experiments/registry)")
    p.add_argument("--version", help="current (default), last-good, latest or vNNNN")
    p.add_argument("--event-log", type=Path, help="the endpoint's event log: consent, recent behaviour (default: data/store/served)")
    p.add_argument("--out", type=Path, required=True, help="this run's lists, .parquet: user_id, rank, item_id, score, reason, ...")
    p.add_argument("--sent-log", type=Path, default=Path("experiments/email/sent.parquet"), help="every list sent so far (appended)")
    p.add_argument("--k", type=int, default=10, help="items per email")
    p.add_argument("--max-sends", type=int, default=2, help="an item sent to a shopper this many times is not sent to them again")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. privacy.consent.email=true")
    p.set_defaults(func=cmd_email)

    p = commands.add_parser("audit", help="why did this shopper see this item: the decision records of a user, session or trace id")
    p.add_argument("--user", help="the shop's user id (hashed with $HYPERREC_ID_KEY, as the server did)")
    p.add_argument("--session", help="a session id (hashed the same way)")
    p.add_argument("--decision", metavar="TRACE_ID", help="one answer's trace_id")
    p.add_argument("--item", help="only the decisions that showed this item (highlighted)")
    p.add_argument("--verify", action="store_true", help="check the checksum chain of every file (edits, deletions, reordering)")
    p.add_argument("--model-events", action="store_true", help="the versions served and who changed them (start, swap, rollback, canary)")
    p.add_argument("--limit", type=int, default=20, help="show at most the last N decisions (or model events)")
    p.add_argument("--path", type=Path, help="the audit folder (default: the serve config's audit.path, beside its event log)")
    p.add_argument("--config", type=Path, help="the serve YAML the server ran with (audit path, privacy key variable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. event_log=data/store/served")
    p.set_defaults(func=cmd_audit)

    p = commands.add_parser("monitor", help="a running endpoint's monitors: versions, online CTR, drift, event lag (tables, plots)")
    p.add_argument("--url", help="the endpoint (default: the serve config's host and port)")
    p.add_argument("--out", type=Path, default=Path("experiments/results/monitor"), help="where the tables and plots go")
    p.add_argument("--config", type=Path, help="the serve YAML the server runs with (its port, its bounds)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. port=8001")
    p.set_defaults(func=cmd_monitor)

    p = commands.add_parser("erase", help="delete a shopper's data: events in the event log (and an offline store), Redis state")
    p.add_argument("--user", required=True, help="the shop's user id; their linked sessions go too")
    p.add_argument("--event-log", type=Path, help="the server's event log (default: the serve config's event_log)")
    p.add_argument("--offline-store", type=Path, help="an offline store (training data) to erase them from as well")
    p.add_argument("--config", type=Path, help="the serve YAML the server runs with (event log, store.kind=redis and its URL)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. store.kind=redis store.redis_url=redis://...")
    p.set_defaults(func=cmd_erase)

    p = commands.add_parser("bench", help="open-loop load on the endpoint: p50/p95/p99 per rate and per catalogue size")
    p.add_argument("--items", type=int, default=50_000, help="catalogue size of the rate sweep")
    p.add_argument("--rates", default="50,100,200,300", help="requests/s, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step (after 2 s of warm-up)")
    p.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes for the latency-vs-size table ('' = none)")
    p.add_argument("--size-rate", type=float, default=200.0, help="requests/s of the latency-vs-size table")
    p.add_argument(
        "--registry-root", type=Path, default=Path("experiments/bench/registry"), help="synthetic bundles, one registry per size (reused)"
    )
    p.add_argument("--registry", type=Path, help="benchmark a version of this registry (a real export, its own shoppers) instead")
    p.add_argument("--version", help="with --registry: current (default), last-good, latest or vNNNN")
    p.add_argument("--profile", default="30,10", help="synthetic shoppers: mean orders per user, mean items per order")
    p.add_argument("--client", choices=["process", "inline"], default="process", help="HTTP load generator: own process or this one")
    p.add_argument("--out", type=Path, default=Path("experiments/results/bench"))
    p.add_argument("--config", type=Path, help="serve YAML to benchmark (defaults otherwise)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="serve settings, e.g. ranking.max_batch_size=64")
    p.set_defaults(func=cmd_bench)

    experiment = commands.add_parser("experiment", help="A/B experiments").add_subparsers(dest="experiment_command", required=True)
    p = experiment.add_parser("analyze", help="an experiment's logs: per-arm metrics, differences with intervals, CUPED, SRM, stop rule")
    p.add_argument("name", help="the experiment (a folder of exposure and outcome Parquet under --logs)")
    p.add_argument("--logs", type=Path, default=Path("experiments/logs"))
    p.add_argument("--config", type=Path, help="experiment YAML (default: experiment.yaml next to the logs)")
    p.add_argument("--metric", choices=["revenue", "margin"], default="revenue", help="per-unit metric of CUPED and the stop rule")
    p.add_argument("--pre-days", type=float, default=14.0, help="days before the start that give CUPED's covariate")
    p.add_argument("--out", type=Path, default=Path("experiments/results/experiments"))
    p.set_defaults(func=cmd_experiment_analyze)
    p = experiment.add_parser("collect", help="the experiment an endpoint ran: its audit and event logs as exposures and outcomes")
    p.add_argument("--config", type=Path, help="the serve config the endpoint ran with (its experiment, audit and event logs)")
    p.add_argument("overrides", nargs="*", help="dotted serve settings, e.g. experiment=configs/experiment/NAME.yaml")
    p.add_argument("--logs", type=Path, default=Path("experiments/logs"))
    p.add_argument("--attribution-s", type=float, default=3600.0, help="credit an outcome to a slate that showed its item this long before")
    p.set_defaults(func=cmd_experiment_collect)

    p = commands.add_parser("simulate", help="the closed-loop simulated shop: an A/B experiment of served arms with simulated shoppers")
    p.add_argument("config", type=Path, help="configs/sim/*.yaml")
    p.add_argument("--write-history", type=Path, metavar="DIR", help="only write the history days (training data) to this offline store")
    with_overrides(p)
    p.set_defaults(func=cmd_simulate)

    p = commands.add_parser("demo", help="Instacart: baselines, a short SASRec run, export, the endpoint and an example request")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    p.add_argument("--no-wait", action="store_true", help="stop the endpoint after the example requests (CI, scripts)")
    with_overrides(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(verbose=args.verbose)
    if args.command in ("recommend", "email") and args.k < 1:
        print("error: --k must be at least 1", file=sys.stderr)
        return 2
    if args.command == "email" and args.max_sends < 1:
        print("error: --max-sends must be at least 1", file=sys.stderr)
        return 2
    try:
        args.func(args)
    # ConfigError, DataFileError, RegistryError/BundleError and pydantic's ValidationError are ValueErrors
    except (ValueError, FileNotFoundError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
