"""What the notebooks call that is about showing, not computing: charts, tables and the tune
notebook's session and app.

Beside the box at the top: imports the market and what is below it; the box never imports it
(and it never imports the box), so a notebook's look cannot change what a night computes.
"""
