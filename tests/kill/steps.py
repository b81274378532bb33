#!/usr/bin/env python3
# The steps of the tools' flow functions and their injection points, read
# from the code (no list kept by hand):
#   steps.py SOURCE_ROOT list     every injection point: "TOOL POINT", one a line
#   steps.py SOURCE_ROOT check    exit 1, naming file and line, for every step
#                                 that no test_hook() follows
#   steps.py SOURCE_ROOT insert   (for developers) adds the missing hooks
# A step is a statement at the top level of a flow function (8 spaces in)
# that starts with "r = " or "if ((r = "; the hook must come after its
# error handling and before the next step. FLOWS names the flow functions;
# a teardown point is passed by every tool that tears down.
import re
import sys
from pathlib import Path

FLOWS = {
    'tools/microvm-stage.c': ('microvm-stage', ['run', 'stage_jail']),
    'tools/microvm-launch.c': ('microvm-launch', ['main']),
    'tools/microvm-stop.c': ('microvm-stop', ['main']),
    'tools/microvm-cleanup.c': ('microvm-cleanup', ['main']),
    'tools/microvm-reclaim.c': ('microvm-reclaim', ['reclaim_one']),
    'lib/vm/vm-reclaim.c': ('microvm-reclaim', ['reclaim_vm']),
}
# Shared code with points of its own, and the tools that run it.
SHARED = {
    'lib/vm/vm-teardown.c': ['microvm-stage', 'microvm-cleanup', 'microvm-reclaim'],
    'lib/jail/uid-alloc.c': ['microvm-stage'],
}
STEP = re.compile(r'^        (r = |if \(\(r = )')
HOOK = re.compile(r'test_hook\("([a-z0-9-]+)"\)')


def function_body(lines, name):
    """(first, last) line index of the body of function name."""
    start = None
    for i, l in enumerate(lines):
        if re.match(r'^(static )?[a-z][^;(]*\b' + re.escape(name) + r'\(', l):
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith('{') and not lines[j].rstrip().endswith(';'):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith('{'):
                start = j + 1
                break
    if start is None:
        sys.exit(f'steps.py: no function {name}')
    for j in range(start, len(lines)):
        if lines[j] == '}':
            return start, j
    sys.exit(f'steps.py: no end of function {name}')


def step_end(lines, i, last):
    """Index after the step at i and its error handling."""
    j = i
    while not lines[j].rstrip().endswith(';') and not lines[j].rstrip().endswith('{'):
        j += 1
    if lines[j].rstrip().endswith('{'):        # if ((r = ...)) { ... }
        while lines[j] != '        }':
            j += 1
    j += 1
    while j < last and re.match(r'^        if \(.*\br\b', lines[j]) and not STEP.match(lines[j]):
        if lines[j].rstrip().endswith('{'):
            while lines[j] != '        }':
                j += 1
            j += 1
        else:
            j += 1
            while j < last and lines[j].startswith('                '):
                j += 1
    return j


def steps_of(root, path, func):
    lines = (root / path).read_text().split('\n')
    first, last = function_body(lines, func)
    out = []
    i = first
    while i < last:
        if STEP.match(lines[i]):
            j = step_end(lines, i, last)
            hook = None
            k = j
            while k < last and not STEP.match(lines[k]):
                m = HOOK.search(lines[k])
                if m:
                    hook = m.group(1)
                    break
                k += 1
            call = re.search(r'r = (?:step\()?([a-z_0-9]+)\(', lines[i])
            out.append((i + 1, j, hook, call.group(1) if call else 'step'))
            i = j
        else:
            i += 1
    return lines, out


def main():
    root = Path(sys.argv[1])
    what = sys.argv[2]
    bad = 0
    points = []
    for path, (tool, funcs) in FLOWS.items():
        for func in funcs:
            lines, steps = steps_of(root, path, func)
            if what == 'insert':
                for lineno, end, hook, call in reversed(steps):
                    if not hook:
                        name = tool.replace('microvm-', '') + '-' + call.replace('_', '-')
                        lines.insert(end, f'        test_hook("{name}");')
                (root / path).write_text('\n'.join(lines))
                continue
            for lineno, end, hook, call in steps:
                if not hook:
                    print(f'{path}:{lineno}: step {call}() in {func}() has no injection point (test_hook) after it')
                    bad = 1
        for p in HOOK.findall((root / path).read_text()):
            points.append((tool, p))
    for path, tools in SHARED.items():
        for p in HOOK.findall((root / path).read_text()):
            points += [(t, p) for t in tools]
    seen = set()
    for t, p in points:
        if (t, p) in seen and any(path for path, (tool, _) in FLOWS.items() if tool == t):
            print(f'{t}: injection point {p} named twice')
            bad = 1
        seen.add((t, p))
    if what == 'list':
        for t, p in dict.fromkeys(points):
            print(t, p)
    sys.exit(bad)


main()
