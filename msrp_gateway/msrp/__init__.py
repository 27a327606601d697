"""MSRP stack (RFC 4975): sans-IO frames, URIs, chunking, sessions, plus Twisted transports."""
