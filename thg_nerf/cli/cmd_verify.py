"""``thg-nerf verify``: is a video a thg-nerf output? Exit 0 when the provenance mark is found, 1 when not."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from thg_nerf.provenance.detect import FOUND_P, verify_video

    det = verify_video(args.video)
    if args.json:
        print(json.dumps({"video": str(args.video), **det.to_dict()}, indent=2))
        return 0 if det.found else 1
    if det.found:
        p = det.payload
        print(f"found: thg-nerf provenance mark (false-positive probability {det.false_positive_probability:.1e})")
        print(f"  tool {p.tool_name}, run fingerprint {p.fingerprint_hex}, date {p.date.isoformat()}, "
              f"consent statement {'recorded' if p.consent else 'NOT given'}")
        print(f"  evidence: sync z {det.sync_z:.1f} in {det.window[0]:.1f}-{det.window[1]:.1f} s of "
              f"{det.duration:.1f} s ({det.candidates} windows tested), scale {det.scale:.2f}")
    else:
        print(f"not found: no thg-nerf provenance mark in {det.duration:.1f} s of video (best sync z "
              f"{det.sync_z:.1f}; a mark is reported at false-positive probability <= {FOUND_P:g})")
    if det.tag is None:
        print("  container tag: none")
    else:
        agree = {True: "agrees with the mark", False: "DIFFERS from the mark",
                 None: "the invisible mark was not found; a tag alone is easy to add or strip"}[det.tag_matches]
        print(f"  container tag: {det.tag!r} ({agree})")
    return 0 if det.found else 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", parents=[common], help="check a video for the thg-nerf provenance mark",
                       description="Look for the invisible provenance mark every thg-nerf render carries and "
                       "read its payload (tool, run fingerprint, date, consent). Exit status: 0 found, 1 not "
                       "found, 2 bad input. See docs/PROVENANCE.md.")
    p.add_argument("video", metavar="VIDEO", help="video file (any format ffmpeg reads) or a folder of PNG frames")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
