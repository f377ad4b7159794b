#!/usr/bin/env python3
"""A stand-in for ssh in tests: ``ssh_standin.py [ssh options] HOST COMMAND...``.

Runs COMMAND on this machine with ``sh -c``, as sshd would run it with the user's
shell: the words after HOST are joined with spaces into one command line, exactly as
ssh sends them. ssh's options (``-p 2222``, ``-o BatchMode=yes``, ``-tt``, ``--``) are
accepted and ignored.

- ``SSH_STANDIN_LOG=FILE``: append one JSON line per invocation,
  ``{"host": ..., "command": ..., "options": [...], "pid": ...}``, before running it.
- ``SSH_STANDIN_NETNS_<HOST>=NAME``: run the command in network namespace NAME
  (``ip netns exec NAME sh -c ...``, needs root). ``<HOST>`` is the host name upper-cased,
  with every character other than a letter, digit or ``_`` replaced by ``_``
  (``node-1.lan`` -> ``SSH_STANDIN_NETNS_NODE_1_LAN``).

The command replaces this process (exec), so its exit code is the stand-in's and a
signal to the stand-in's pid reaches the command. Usage errors exit with 255, ssh's
code for its own failures.
"""
import json
import os
import re
import sys

# ssh options that take an argument (OpenSSH 9); every other letter is a flag.
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOopQRSWw")


def split_args(args):
    """``(options, host, command words)`` of an ssh command line."""
    options = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        options.append(arg)
        for j, letter in enumerate(arg[1:], 1):
            if letter in _WITH_ARGUMENT:
                if j == len(arg) - 1:  # "-p 2222": the value is the next word
                    i += 1
                    if i == len(args):
                        raise SystemExit(_usage(f"option -{letter} needs a value"))
                    options.append(args[i])
                break  # "-p2222": the rest of the word is the value
        i += 1
    if i >= len(args):
        raise SystemExit(_usage("no host given"))
    return options, args[i], args[i + 1:]


def _usage(problem):
    print(f"ssh_standin: {problem}\nusage: ssh_standin.py [ssh options] HOST COMMAND...",
          file=sys.stderr)
    return 255


def netns_variable(host):
    name = host.rpartition("@")[2]  # user@host: the host part
    return "SSH_STANDIN_NETNS_" + re.sub(r"\W", "_", name, flags=re.ASCII).upper()


def log(path, record):
    """Append one line in a single write, so concurrent stand-ins do not interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def main(args):
    options, host, words = split_args(args)
    if not words:
        return _usage(f"no command for host {host!r} (an interactive login is not supported)")
    command = " ".join(words)
    if os.environ.get("SSH_STANDIN_LOG"):
        log(os.environ["SSH_STANDIN_LOG"],
            {"host": host, "command": command, "options": options, "pid": os.getpid()})
    argv = ["sh", "-c", command]
    netns = os.environ.get(netns_variable(host))
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"ssh_standin: cannot run {argv[0]}: {exc}", file=sys.stderr)
        return 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
