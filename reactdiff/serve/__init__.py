"""Live reactions: sessions that stream a speaker in and listener frames out (session.py), the WebSocket service
and its dynamic batching (server.py, batcher.py, protocol.py), the web page (web/)."""
