from twisted.application.service import ServiceMaker

nac = ServiceMaker("nac", "nac.tap", "Trusted Network Connect server (TNCS with IMVs)", "nac")
