"""`dpros eval sim --checkpoint DIR`: success of each sampler in the sim, through the node graph.

For every sampler (streaming, ddpm, ddim by default) it starts the `dpros up sim` graph
(sim_node -> policy_node -> safety_filter_node -> sim_node) with that sampler, and for every seed
resets the sim and the policy, lets the policy act until the task succeeds or times out, and
records success, inference and end-to-end latency, achieved control rate and denoiser evaluations
per executed action. Same checkpoint, same seeds, one run. Writes `<out>/sim_eval.json` and a bar
chart; `--frames` also writes a PNG strip of the scene camera and a latency histogram.
"""
from __future__ import annotations

import json
import os
import tempfile

from diffusion_policy_ros.cli.arguments import (add_episode_arguments, add_set_argument, parse_real_time_factors,
                                                parse_samplers, parse_sets)


def add_arguments(parser):
    add_episode_arguments(parser)
    parser.add_argument("--real-time-factor", default="1.0",
                        help="sim speed, one number or per sampler (e.g. 'streaming=1,ddim=1,ddpm=0.2'); "
                             "below 1 gives a slow sampler more sim time per inference, so its success "
                             "measures the policy rather than this machine's speed")
    parser.add_argument("--out", default="build/eval", help="folder for sim_eval.json and the pictures")
    parser.add_argument("--frames", action="store_true",
                        help="also save a scene-camera strip of the first episode and a latency histogram")
    add_set_argument(parser, "any launch argument of the sim graph (repeatable)")


def run(args) -> int:
    from tqdm import tqdm

    from diffusion_policy_ros import reporting
    from diffusion_policy_ros.evaluation.graph_episodes import GraphEpisodeClient
    from diffusion_policy_ros.graph import build_graph
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.supervisor import (catch_stop_signals, exited_nodes, manage_lifecycle,
                                                         spinning_node, start_graph, stop_graph)

    catch_stop_signals()
    samplers = parse_samplers(args.samplers)
    real_time_factors = parse_real_time_factors(args.real_time_factor, samplers)
    robot = load_robot_config(config_path(args.config))
    os.makedirs(args.out, exist_ok=True)
    logs = tempfile.mkdtemp(prefix="dpros_eval_sim_")
    seeds = list(range(args.seed, args.seed + args.episodes))
    results, written = {}, []
    for sampler in samplers:
        sets = {"policy_checkpoint": os.path.abspath(args.checkpoint), "policy_sampler": sampler,
                "sim_real_time_factor": str(real_time_factors[sampler]), **parse_sets(args.set)}
        specs = build_graph("sim", args.config, sets)
        procs = start_graph(specs, log_dir=logs)
        try:
            error = manage_lifecycle([s.name for s in specs if s.lifecycle], start=False)
            if error:
                print(f"eval sim: {error} (logs in {logs})")
                return 1
            with spinning_node("dpros_eval_sim") as node:
                client = GraphEpisodeClient(node, robot, record_frames=args.frames and sampler == samplers[0])
                progress = tqdm(total=len(seeds), desc=f"eval {sampler}", unit="episode")
                for seed in seeds:
                    dead = exited_nodes(specs, procs)
                    if dead:
                        print(f"eval sim: {', '.join(dead)} exited (logs in {logs})")
                        return 1
                    client.episode(seed, args.timeout_s)
                    progress.set_postfix(success=f"{client.success_rate():.0%}", refresh=False)
                    progress.update(1)
                progress.close()
                results[sampler] = client.summary()
                if client.frames:
                    strip = os.path.join(args.out, "scene_strip.png")
                    reporting.save_frame_strip(client.frames, strip,
                                               title=f"{sampler}, seed {seeds[0]}: scene camera once per sim second")
                    written.append(strip)
        finally:
            stop_graph(procs)
    report = {"checkpoint": os.path.abspath(args.checkpoint), "config": args.config, "seeds": seeds,
              "real_time_factor": real_time_factors, "timeout_s": args.timeout_s, "methods": results}
    path = os.path.join(args.out, "sim_eval.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    reporting.print_graph_eval_table(results, real_time_factors)
    chart = os.path.join(args.out, "sim_eval.png")
    reporting.save_graph_eval_chart(results, real_time_factors, chart)
    written = [path, chart, *written]
    if args.frames:
        histogram = os.path.join(args.out, "latency.png")
        reporting.save_graph_latency_histogram(results, real_time_factors, histogram)
        written.append(histogram)
    print("wrote " + ", ".join(written))
    return 0
