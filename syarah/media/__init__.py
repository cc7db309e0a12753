"""Uploaded media: what each message type accepts (kinds), content sniffing (sniff),
safe image conversion (images), and the service that stores and checks uploads."""
