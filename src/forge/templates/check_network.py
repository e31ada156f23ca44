"""What in a check's text reaches the network: the tools a check calls by name and the
networking modules of the script languages graders are written in. Read by the template
check (a check that says `network: false` must not name one) and by
`forge.grading.watched_checks` (which tasks "Check this task" leaves to Submit)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A tool name as a command word (a path to it counts; `ssh-keygen`, `/etc/ssh/`, `~/.ssh`
# or `host=ops` do not).
_TOOLS = ("curl|wget|nc|ncat|netcat|socat|dig|nslookup|ssh|ssh-keyscan|scp|sftp|rsync|tftp|"
          "ping|arping|traceroute|tracepath|nmap|hping3|telnet|ldapsearch|smbclient|snmpget|"
          "snmpwalk|redis-cli|iperf3")
NETWORK_TOOL = re.compile(
    rf"(?<![\w.-])(?:{_TOOLS})(?![\w./-])|/dev/(?:tcp|udp)/|openssl\s+s_client"
    # modules of script languages: python, perl, ruby, php
    r"|\b(?:import|from)\s+(?:socket|urllib|http\.client|requests|httpx|aiohttp|ftplib|"
    r"smtplib|telnetlib|paramiko)\b|\bsocket\.(?:socket|create_connection|create_server)\b"
    r"|\basyncio\.open_connection\b|\burllib\.request\b|IO::Socket|LWP::"
    r"|Net::(?:HTTP|FTP|SSH|Ping|Telnet)|\bTCPSocket\b|\bfsockopen\b|\bcurl_init\b")


def command_names_network(command: Iterable[str]) -> bool:
    """Whether a check's command (its argv, joined) names a network tool or module."""
    return NETWORK_TOOL.search(" ".join(command)) is not None
