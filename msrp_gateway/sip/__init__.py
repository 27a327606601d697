"""SIP stack: sans-IO messages, URIs, transactions and dialogs, plus Twisted transports."""
