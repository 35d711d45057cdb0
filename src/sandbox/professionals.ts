/**
 * Synthetic health professionals of the PSC simulator, with PSC-shaped userinfo claims.
 * Every identity here is invented; the national ids use the test range `8997…`.
 */

/** Userinfo claims as PSC publishes them (subset). */
export type PscClaims = Record<string, unknown>;

function professional(opts: {
  nationalId: string;
  given: string;
  family: string;
  professionCode: string;
  categoryCode: string;
  savoirFaire: string;
  structureId: string;
  structureName: string;
  sector: string;
}): PscClaims {
  return {
    SubjectNameID: opts.nationalId,
    preferred_username: opts.nationalId,
    given_name: opts.given,
    family_name: opts.family,
    SubjectRefPro: {
      codeCivilite: "",
      exercices: [
        {
          codeProfession: opts.professionCode,
          codeCategorieProfessionnelle: opts.categoryCode,
          codeCiviliteDexercice: "",
          nomDexercice: opts.family,
          prenomDexercice: opts.given,
          codeTypeSavoirFaire: opts.savoirFaire ? "S" : "",
          codeSavoirFaire: opts.savoirFaire,
          activities: [
            {
              codeModeExercice: "S",
              codeSecteurDactivite: opts.sector,
              codeSectionPharmacien: "",
              codeRole: "",
              numeroSiretSite: "",
              numeroSirenSite: "",
              numeroFinessSite: opts.structureId,
              numeroFinessetablissementJuridique: "",
              identifiantTechniqueDeLaStructure: `R${opts.structureId}`,
              raisonSocialeSite: opts.structureName,
              enseigneCommercialeSite: "",
              codePostal: "75000",
              commune: "PARIS",
            },
          ],
        },
      ],
    },
    SubjectRole: [`${opts.professionCode}^1.2.250.1.213.1.1.5.5`],
    Secteur_Activite: `${opts.sector}^1.2.250.1.71.4.2.9`,
    otherIds: [{ identifiant: opts.nationalId.slice(1), origine: "RPPS", qualite: 1 }],
  };
}

/** The simulator's professionals by national id: a doctor, a pharmacist, a nurse. */
export const PROFESSIONALS: Record<string, PscClaims> = {
  "899700218896": professional({
    nationalId: "899700218896",
    given: "Camille",
    family: "SANDBOX-MEDECIN",
    professionCode: "10",
    categoryCode: "C",
    savoirFaire: "SM54",
    structureId: "000000000001",
    structureName: "CABINET DU DR SANDBOX",
    sector: "SA07",
  }),
  "899700366240": professional({
    nationalId: "899700366240",
    given: "Dominique",
    family: "SANDBOX-PHARMACIEN",
    professionCode: "21",
    categoryCode: "C",
    savoirFaire: "",
    structureId: "000000000002",
    structureName: "PHARMACIE DU SANDBOX",
    sector: "SA33",
  }),
  "899700412375": professional({
    nationalId: "899700412375",
    given: "Alex",
    family: "SANDBOX-INFIRMIER",
    professionCode: "60",
    categoryCode: "C",
    savoirFaire: "",
    structureId: "000000000003",
    structureName: "CENTRE DE SOINS SANDBOX",
    sector: "SA05",
  }),
};
