from twisted.application.service import ServiceMaker

msrpgw = ServiceMaker("msrpgw", "msrp_gateway.tap", "SIP MESSAGE <-> MSRP gateway", "msrpgw")
