# SIP (RFC 3261) for the gateway: messages, transactions, transports, registrar, RFC 3428 MESSAGE.
"""The part of SIP the gateway needs: app users register and exchange RFC 3428 MESSAGE."""
