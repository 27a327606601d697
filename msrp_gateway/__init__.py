"""msrpgw: a gateway between SIP page-mode (MESSAGE) and session-mode (MSRP) messaging."""

__version__ = "0.1.0"
