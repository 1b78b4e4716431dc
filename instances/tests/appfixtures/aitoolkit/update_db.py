"""Fixture of `npm run update_db` (real: npx prisma generate && npx prisma db push): creates the UI's
SQLite database next to the repository (schema.prisma: file:../../aitk_db.db) with its Settings table."""

import os
import sqlite3

db = os.path.join(os.path.dirname(os.getcwd()), "aitk_db.db")  # run from ui/
with sqlite3.connect(db) as con:
    con.execute("CREATE TABLE IF NOT EXISTS Settings (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, "
                "value TEXT NOT NULL)")
print("fixture update_db:", db)
