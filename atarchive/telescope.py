"""The Allen Telescope Array's site (WGS84), as pyuvdata's telescope table gives it. One copy:
the simulator, CASA children (astropy's offline site registry) and the QA plots read it here."""

ATA_LAT_DEG = 40.81743055555555
ATA_LON_DEG = -121.47073611100521
ATA_HEIGHT_M = 1019.222
