"""Control-plane persistence: engine/session, ORM tables, repositories, migrations."""
